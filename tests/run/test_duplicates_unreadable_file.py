"""#29 (5): one unreadable file in a run trained elsewhere does not turn off the duplicate search for the
whole run: the other files are searched (a copy is still found) and the unreadable one is in no group."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from csl_core.run.duplicates import find_duplicates
from csl_core.run.store import RunStore


def test_one_unreadable_file_leaves_the_others_searched(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(20):
        path = tmp_path / "data" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    (tmp_path / "data" / "1.png").write_bytes((tmp_path / "data" / "0.png").read_bytes())   # a copy
    (tmp_path / "data" / "7.png").write_bytes(b"not an image at all")                        # unreadable
    n = len(paths)
    samples = pd.DataFrame({"index": range(n), "sample_id": paths, "label": [i % 2 for i in range(n)],
                            "class_name": ["a", "b"] * (n // 2), "image_index": range(n), "path": paths})
    store = RunStore.create(tmp_path / "run", meta={"classes": ["a", "b"], "source": "test", "config": {}},
                            samples=samples, epochs=1)
    store.write_epoch(0, {"loss": np.linspace(0, 1, n, dtype=np.float32), "correct": np.ones(n, bool),
                          "margin": np.zeros(n, np.float32), "p_given": np.full(n, .5, np.float32),
                          "p_max": np.full(n, .5, np.float32)})
    report = find_duplicates(store)
    group = report.samples["group"]
    assert group.iloc[0] == group.iloc[1] and not pd.isna(group.iloc[0]) and group.iloc[0] >= 0
    assert pd.isna(group.iloc[7]) or group.iloc[7] < 0 or (group == group.iloc[7]).sum() == 1
