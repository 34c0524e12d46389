"""#29 (3): a view never writes. Every page of a run opened read-only (a folder that is not writable, opened
from the address) leaves every file of the run as it was, even where a writable view would keep something (scores
kept under an older score table's version); ``?run=`` naming a run that trains on this server goes through
the same runs-folder check as any other."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.support import HANG_SECONDS

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_"))
pytestmark = pytest.mark.usefixtures("no_magic")


def _digest(folder: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                               and not p.is_symlink() else "dir")
    return out


@pytest.fixture()
def stale_run(demo_copy) -> Path:
    """The demo run, its kept files named after an older score table: a writable view would keep new ones
    and delete these."""
    path = demo_copy
    for kept in [*path.glob("scores-*.parquet"), *path.glob("evaluation-*.json")]:
        epochs = kept.name.split("-")[1]
        kept.rename(kept.with_name(f"{kept.name.split('-')[0]}-{epochs}-000000000000{kept.suffix}"))
    for leftover in path.glob("decisions.sqlite*"):
        leftover.unlink()
    return path


def test_every_page_of_a_read_only_run_opened_from_the_address_leaves_the_run_unchanged(stale_run, monkeypatch,
                                                                                      open_app):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and str(stale_run) in str(p))
                        else real_access(p, mode, **kw))            # as a folder of another user (tests run as root)
    before = _digest(stale_run)
    at = open_app(run=str(stale_run))
    assert any("read-only" in i.value for i in at.sidebar.info)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert _digest(stale_run) == before, page


def test_the_address_of_a_run_training_here_goes_through_the_check_and_the_gate(runs_dir, demo_run, tmp_path,
                                                                              open_app, copy_demo):
    from csl_core.engine.jobs import Job
    from csl_core.engine.train import TrainConfig
    from pages._common import job_registry

    outside = tmp_path / "elsewhere" / "run"
    copy_demo(outside)
    inside = runs_dir / "training"
    copy_demo(inside)

    registry = job_registry()
    try:
        for path in (outside, inside):   # a job of this server for each (one that ended: its data is missing)
            job = registry.start(Job(TrainConfig(data=f"imagefolder:{tmp_path / 'nowhere'}"), path))
            assert job.wait(timeout=HANG_SECONDS).state == "failed"
        at = open_app(run=str(outside))
        assert at.session_state.get("run_path") != str(outside)
        assert any("not a run under the runs folder" in w.value for w in at.sidebar.warning)
        at = open_app(run=str(inside))
        assert at.session_state["run_path"] == str(inside)
        assert not any("read-only" in i.value for i in at.sidebar.info)   # #31: as every run under the folder
    finally:
        for path in (outside, inside):
            registry.discard(path)


@pytest.mark.parametrize("address", ["runs/a\x00b", "x" * 300])
def test_an_address_that_names_no_folder_says_so_and_the_page_draws(runs_dir, address, open_app):
    at = open_app(run=address)
    assert not at.exception
    assert any("not" in w.value for w in at.sidebar.warning)
    assert not any("damaged" in e.value for e in at.error)
