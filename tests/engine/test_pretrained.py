"""Fine-tuning a torchvision backbone from ImageNet weights, offline: a state dict saved from a random
model stands in for the real weights (no download in tests)."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from csl_core.cli import main
from csl_core.config import FINETUNE_LR
from csl_core.engine.models import backbone_preset, build_model, load_backbone_weights
from csl_core.run.store import RunStore
from tests.support import HANG_SECONDS


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache, and no network: any download attempt fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch-home"


@pytest.fixture(scope="module")
def resnet18_state(tmp_path_factory):
    torch.manual_seed(1)
    file = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), file)   # ImageNet layout: 1000-class fc
    return file


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / c / f"{i}.png")
    return tmp_path / "photos"


def test_a_weights_file_loads_the_backbone_and_keeps_a_new_head(resnet18_state):
    model = build_model("torchvision:resnet18", in_channels=3, num_classes=4)
    left_out = load_backbone_weights(model, "torchvision:resnet18", weights_file=resnet18_state)
    saved = torch.load(resnet18_state, weights_only=True)
    assert left_out == ["fc.bias", "fc.weight"]
    assert torch.equal(model.body.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.body.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    assert model.embed(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_weights_for_another_architecture_are_refused(resnet18_state):
    model = build_model("torchvision:resnet34", in_channels=3, num_classes=2)
    with pytest.raises(ValueError, match="do not fit torchvision's resnet34"):
        load_backbone_weights(model, "torchvision:resnet34", weights_file=resnet18_state)


def test_train_with_weights_fine_tunes_with_the_weights_settings(photos, resnet18_state, tmp_path, torch_home):
    out = tmp_path / "run"
    assert main(["train", "--data", f"imagefolder:{photos}", "--weights", str(resnet18_state), "--epochs", "1",
                 "--image-size", "32", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    store = RunStore(out)
    meta = store.meta
    preset = backbone_preset("resnet18")
    assert meta["model"] == "torchvision:resnet18" and meta["completed"]
    assert meta["normalisation"] == {"mean": preset["mean"], "std": preset["std"]}   # ImageNet's, not the data's
    assert meta["config"]["lr"] == FINETUNE_LR and meta["image_shape"] == [3, 32, 32]
    assert np.load(out / "embeddings.npy").shape == (16, 512)
    assert preset["image_size"] == 224  # without --image-size, photos are decoded at the weights' size


def test_small_grey_images_are_resized_for_the_backbone(resnet18_state, tmp_path, torch_home):
    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--subset", "40", "--inject-duplicates", "0", "--weights",
                 str(resnet18_state), "--epochs", "1", "--image-size", "16", "--device", "cpu", "--out", str(out),
                 "--quiet"]) == 0
    meta = RunStore(out).meta
    assert meta["image_shape"] == [1, 8, 8] and meta["input_size"] == 16
    assert len(meta["normalisation"]["mean"]) == 1
    assert not np.isnan(RunStore(out).array("loss")).any()


def test_pretrained_offline_says_where_to_put_the_weights(photos, tmp_path, torch_home, capsys):
    assert main(["train", "--data", f"imagefolder:{photos}", "--pretrained", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    cache = torch_home / "hub" / "checkpoints" / backbone_preset("resnet18")["file"]
    assert "offline?" in err and str(cache) in err and "--weights FILE" in err
    assert not (tmp_path / "run" / "meta.json").exists()


def test_pretrained_uses_torchs_cache_without_a_network(photos, resnet18_state, tmp_path, torch_home):
    cache = torch_home / "hub" / "checkpoints" / backbone_preset("resnet18")["file"]
    cache.parent.mkdir(parents=True)
    cache.write_bytes(resnet18_state.read_bytes())
    out = tmp_path / "run"
    assert main(["train", "--data", f"imagefolder:{photos}", "--pretrained", "--epochs", "1", "--image-size", "32",
                 "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    assert RunStore(out).meta["model"] == "torchvision:resnet18" and RunStore(out).meta["config"]["pretrained"]


def test_an_unknown_backbone_lists_the_known_ones(photos, tmp_path, capsys):
    assert main(["train", "--data", f"imagefolder:{photos}", "--pretrained", "--model", "alexnet",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "no pretrained backbone 'alexnet'; known: resnet18" in capsys.readouterr().err


@pytest.mark.usefixtures("no_magic")
def test_the_run_page_fine_tunes_a_backbone_from_a_weights_file(runs_dir, torch_home, resnet18_state, photos,
                                                                  tmp_path, open_app):


    from pages._common import job_registry

    at = open_app()
    at.selectbox(key="run_source").set_value("imagefolder").run()
    at.text_input(key="run_location").input(str(photos)).run()
    assert at.number_input(key="run_epochs").value == 20  # the from-scratch recipe of one's own files
    at.selectbox(key="run_start_from").set_value("imagenet").run()
    assert at.number_input(key="run_epochs").value == 5   # fine-tuning: fewer epochs
    assert "resnet50" in at.selectbox(key="run_model").options
    assert any("will be downloaded" in c.value for c in at.caption)  # said, not done, on the form
    assert not list(torch_home.rglob("*.pth"))

    at.number_input(key="run_epochs").set_value(1).run()
    at.selectbox(key="run_start_from").set_value("file").run()
    assert at.number_input(key="run_epochs").value == 1  # a number the person set stays
    at.text_input(key="run_weights").input(str(tmp_path / "missing.pth"))
    at.text_input(key="run_name").input("photos-ft")
    at.button(key="run_start").click().run()
    assert any("missing.pth: no such file" in e.value for e in at.error)
    assert not (runs_dir / "photos-ft").exists()   # nothing started

    at.text_input(key="run_weights").input(str(resnet18_state))
    at.button(key="run_start").click().run()
    assert not at.error, [e.value for e in at.error]
    run = runs_dir / "photos-ft"
    job = job_registry().get(run)
    status = job.wait(timeout=HANG_SECONDS)   # a budget that catches a hang, not a slow machine
    assert status.state == "finished", (status.state, status.error)
    meta = RunStore(run).meta
    assert meta["model"] == "torchvision:resnet18"
    assert (meta["config"]["weights"], meta["config"]["lr"], meta["config"]["pretrained"]) == (
        str(resnet18_state), FINETUNE_LR, False)
