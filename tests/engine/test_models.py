"""Model names a user can give: the two CNNs in other widths (``airbench-x2``), and clear refusals."""
from __future__ import annotations

import pytest
import torch

from csl_core.engine.models import build_model, resolve_model_name, split_width


def _channels(model) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_a_width_multiplier_scales_every_layer_and_keeps_the_interface():
    plain = build_model("airbench", in_channels=3, num_classes=10)
    wide = build_model("airbench-x2", in_channels=3, num_classes=10)
    half = build_model("small-cnn-x0.5", in_channels=1, num_classes=4)
    assert _channels(plain)[1:] == [64, 64, 128, 128, 128, 128]
    assert _channels(wide)[1:] == [128, 128, 256, 256, 256, 256]
    assert _channels(half) == [16, 32]
    x = torch.randn(2, 3, 32, 32)
    assert wide(x).shape == (2, 10) and wide.embed(x).shape == (2, 256)
    assert half(torch.randn(2, 1, 28, 28)).shape == (2, 4)


@pytest.mark.parametrize("name", ["airbench-x0", "airbench-x9", "resnet18-x2", "airbench-xnan", "airbench-x",
                                  "airbench-x 2", "mlp-x2"])
def test_a_bad_width_or_unscalable_model_is_refused_with_the_known_names(name):
    assert split_width(name) is None
    with pytest.raises(ValueError, match="airbench-x2"):
        resolve_model_name(name, 32)


def test_widths_pass_through_name_resolution():
    assert resolve_model_name("airbench-x1.5", 32) == "airbench-x1.5"
    assert split_width("small-cnn-x0.25") == ("small-cnn", 0.25)


def test_each_source_kind_gets_the_recipe_chosen_for_it():
    from csl_core.config import FINETUNE_EPOCHS, TrainConfig

    def recipe(data, **given):
        c = TrainConfig.for_source(data, **given)
        return c.model, c.epochs, c.batch_size, c.lr

    airbench = ("airbench", 20, 256, 0.2)  # measured best on CIFAR-10N's human label errors
    assert recipe("cifar10") == recipe("cifar100:/data") == recipe("csv:labels.csv") == airbench
    assert recipe("imagefolder:/photos") == airbench
    assert recipe("fashion-mnist") == ("auto", 15, 128, 0.05)
    assert recipe("demo")[1] == 12
    assert recipe("cifar10", epochs=3, model="airbench-x2") == ("airbench-x2", 3, 256, 0.2)  # given wins
    # fine-tuning replaces the source's from-scratch recipe
    assert recipe("cifar10", pretrained=True)[:2] == ("auto", FINETUNE_EPOCHS)
