"""A run folder never runs code: a malicious CIFAR folder it names, its config checked before use, field names,
checkpoints loaded weights-only."""
from __future__ import annotations

import json

import pytest
import torch

from csl_core.config import TrainConfig
from csl_core.data import DataError
from csl_core.engine.train import train
from csl_core.run.store import RunError, RunStore
from tests.support.files import MARKER, Payload, malicious_cifar

# ---------------------------------------------------------------- a run folder never runs code

def test_a_run_folder_naming_a_malicious_cifar_folder_runs_no_code(tmp_path, make_run):
    from csl_core.run.duplicates import run_images
    from csl_core.run.images import sample_image

    marker = malicious_cifar(tmp_path / "data")
    store = make_run(tmp_path / "run", config={"data": f"cifar10:{tmp_path / 'data'}", "download": True})
    with pytest.raises(DataError, match="refers to posix.system"):
        sample_image(store.path, 0)                            # the Galleries page's image lookup
    assert run_images(store) is None                           # the duplicate finder's
    with pytest.raises((RunError, DataError)):
        train(TrainConfig(device="cpu"), store.path, resume=True)
    assert not marker.exists()


def test_a_run_folder_config_is_checked_before_use(tmp_path):
    where = tmp_path / "meta.json"
    with pytest.raises(ValueError, match="'epochs' is '3'"):
        TrainConfig.from_run({"data": "demo", "epochs": "3"}, where)
    with pytest.raises(ValueError, match="unknown data source"):
        TrainConfig.from_run({"data": "http://evil/x"}, where)
    with pytest.raises(ValueError, match="'subset' is True"):
        TrainConfig.from_run({"data": "demo", "subset": True}, where)
    config = TrainConfig.from_run({"data": "cifar10:/x", "download": True, "unknown": 1}, where)
    assert config.download is False                            # a shared run folder downloads nothing


def test_every_config_field_a_run_stores_is_read_back_checked(tmp_path):
    from dataclasses import asdict

    where = tmp_path / "meta.json"
    stored = asdict(TrainConfig(data="demo", inject_noise=0.1, noise_kind="pairflip", noise_map=[1, 2, 0],
                                pretrained=True, weights="w.pth"))
    assert asdict(TrainConfig.from_run(stored, where)) == {**stored, "download": False}
    with pytest.raises(ValueError, match="noise_map"):
        TrainConfig.from_run({**stored, "noise_map": ["__import__('os')"]}, where)


def test_a_field_name_cannot_lead_out_of_the_run_folder(tmp_path, make_run):
    store = make_run(tmp_path / "run")
    meta = json.loads((store.path / "meta.json").read_text())
    meta["fields"] = ["loss", "../../victim"]
    (store.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="not a plain name"):
        RunStore(store.path)


def test_checkpoints_load_weights_only(tmp_path, make_run):
    store = make_run(tmp_path / "run")
    marker = tmp_path / MARKER
    torch.save({"epoch": 1, "evil": Payload(marker)}, store.path / "checkpoint.pt")
    with pytest.raises(RunError, match="cannot be read") as caught:
        store.load_checkpoint()
    assert "weights_only=False" not in str(caught.value) and not marker.exists()
