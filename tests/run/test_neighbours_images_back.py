"""#29 (5): a neighbour search saved while a run's images were away (no content hashes, thumbnails only) is
searched again once the images are back, instead of being served for good."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from PIL import Image

from csl_core.run.duplicates import neighbour_index
from csl_core.run.store import RunStore


def test_a_search_made_while_the_images_were_away_is_made_again_when_they_return(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(16):
        path = tmp_path / "data" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    samples = pd.DataFrame({"index": range(16), "sample_id": paths, "label": [i % 2 for i in range(16)],
                            "class_name": ["a", "b"] * 8, "image_index": range(16), "path": paths})
    store = RunStore.create(tmp_path / "run", meta={"classes": ["a", "b"], "source": "test", "config": {}},
                            samples=samples, epochs=1)
    shutil.move(tmp_path / "data", tmp_path / "away")
    away, _ = neighbour_index(store)
    assert away.hashes is None and (store.path / "neighbours.npz").is_file()
    shutil.move(tmp_path / "away", tmp_path / "data")
    back, _ = neighbour_index(store)
    assert back.hashes is not None and back.aligned
