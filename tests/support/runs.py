"""Run folders the tests build by hand, without training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from csl_core.run.store import RunStore


def small_run(path: Path, n: int = 6, epochs: int = 2, finished: int = 2, config: dict | None = None) -> RunStore:
    samples = pd.DataFrame({"index": range(n), "sample_id": [f"s{i}" for i in range(n)],
                            "label": [i % 2 for i in range(n)], "class_name": ["a", "b"] * (n // 2),
                            "image_index": range(n)})
    store = RunStore.create(path, meta={"classes": ["a", "b"], "source": "test", "config": config or {"data": "demo"}},
                            samples=samples, epochs=epochs)
    for epoch in range(finished):
        store.write_epoch(epoch, {"loss": np.full(n, 1.0 + epoch, np.float32), "correct": np.ones(n, bool),
                                  "margin": np.zeros(n, np.float32), "p_given": np.full(n, .5, np.float32),
                                  "p_max": np.full(n, .5, np.float32)})
    return store


def run_over_files(path: Path, paths: list[str], labels: list[int], classes: list[str]) -> RunStore:
    n = len(paths)
    samples = pd.DataFrame({"index": range(n), "sample_id": paths, "label": labels,
                            "class_name": [classes[c] for c in labels], "image_index": range(n), "path": paths})
    store = RunStore.create(path, meta={"classes": classes, "source": "test", "config": {}}, samples=samples, epochs=1)
    store.write_epoch(0, {"loss": np.linspace(0, 1, n, dtype=np.float32), "correct": np.ones(n, bool),
                          "margin": np.zeros(n, np.float32), "p_given": np.full(n, .5, np.float32),
                          "p_max": np.full(n, .5, np.float32)})
    return store
