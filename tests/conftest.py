"""Shared fixtures. ``demo_run`` trains one small demo run per test session; reuse it, never write to it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from csl_core.engine.train import TrainConfig, train

DEMO_EPOCHS = 4

# The tests train on tiny data, where a second thread gains nothing and, on a shared 2-core machine,
# waits at every parallel region for a descheduled sibling: one thread keeps the suite fast and steady.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs a page as ``__main__`` in this process and leaves it there; a process pool
    started later (spawn) would then run that page in every worker. Each test gets the real one back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A finished run folder: the demo (digits, 5% injected noise, duplicate pairs), 4 epochs, seed 0."""
    out = tmp_path_factory.mktemp("demo-run") / "demo"
    train(TrainConfig(data="demo", epochs=DEMO_EPOCHS, device="cpu"), out)
    return out
