"""#29 (5): the pages show a run's image files as training decoded them: turned upright by their EXIF
orientation, and 16-bit greyscale rescaled (not clipped to all white)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from csl_core.data import decode_files
from csl_core.run.images import sample_image
from csl_core.run.store import RunStore


def _run(tmp_path, paths):
    n = len(paths)
    samples = pd.DataFrame({"index": range(n), "sample_id": paths, "label": [0, 1][:n] + [0] * (n - 2),
                            "class_name": ["a", "b"][:n] + ["a"] * (n - 2), "image_index": range(n), "path": paths})
    store = RunStore.create(tmp_path / "run", meta={"classes": ["a", "b"], "source": "test", "config": {}},
                            samples=samples, epochs=1)
    return store


def test_pages_show_exif_rotation_and_16_bit_grey_as_training_does(tmp_path):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(wide)          # a 16-bit greyscale PNG
    photo = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                                        # stored sideways: rotate 90
    Image.new("RGB", (8, 4), (200, 10, 10)).save(photo, exif=exif)
    store = _run(tmp_path, [str(wide), str(photo)])
    grey = np.asarray(sample_image(store.path, 0))
    trained = decode_files([str(wide)], [0], ["a"], image_size=6).images[0, ..., 0]
    assert grey.max() < 255 and abs(int(grey.mean()) - int(trained.mean())) <= 1      # 40000 / 257, not white
    assert sample_image(store.path, 1).size == (4, 8)                               # upright, as trained
