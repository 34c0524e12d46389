"""#29 (2): ``export RUN --format arrays --out RUN`` (or into any run folder) is refused before a byte is
written: it would replace the run's own ``samples.csv`` and arrays."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csl_core.cli import main
from csl_core.run.store import RunStore


def _run(path: Path) -> RunStore:
    samples = pd.DataFrame({"index": range(4), "sample_id": [f"s{i}" for i in range(4)], "label": [0, 1, 0, 1],
                            "class_name": ["a", "b", "a", "b"], "image_index": range(4)})
    store = RunStore.create(path, meta={"classes": ["a", "b"], "source": "test", "config": {}},
                            samples=samples, epochs=1)
    store.write_epoch(0, {"loss": np.linspace(0, 1, 4, dtype=np.float32), "correct": np.ones(4, bool),
                          "margin": np.zeros(4, np.float32), "p_given": np.full(4, .5, np.float32),
                          "p_max": np.full(4, .5, np.float32)})
    return store


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("formats", ["arrays", "csv,arrays", "cleanlab,fiftyone"])
def test_an_export_into_a_run_folder_is_refused_and_the_run_unchanged(tmp_path, capsys, formats):
    store = _run(tmp_path / "run")
    other = _run(tmp_path / "other")
    for out in (store.path, other.path):
        before = _digest(out)
        assert main(["export", str(store.path), "--format", formats, "--out", str(out)]) != 0
        assert "is a run folder" in capsys.readouterr().err
        assert _digest(out) == before
    assert main(["export", str(store.path), "--format", formats, "--out", os.fspath(tmp_path / "elsewhere")]) == 0
