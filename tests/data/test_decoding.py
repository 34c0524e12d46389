"""Data read right, not silently wrong: a path with a colon, float images, EXIF orientation, one pixel
budget shared by the decoding threads."""
from __future__ import annotations

import numpy as np
from PIL import Image

from csl_core.data import build_training_set, parse_spec
from csl_core.data import decode as data_decode
from tests.support.files import folder_of_classes, write_csv


def test_a_path_with_a_colon_is_the_path_it_says(tmp_path):
    folder_of_classes(tmp_path / "pre", classes=("wrong1", "wrong2"))
    folder_of_classes(tmp_path / "pre:v2", classes=("right1", "right2"))
    assert build_training_set(f"imagefolder:{tmp_path}/pre:v2", image_size=8).classes == ["right1", "right2"]
    write_csv(tmp_path / "pre:v2" / "l.csv", [("right1/0.png", "x"), ("right2/0.png", "y")])
    quoted = f"csv:{tmp_path}/pre%3Av2/l.csv"
    assert parse_spec(quoted)[1] == [f"{tmp_path}/pre:v2/l.csv"]
    assert len(build_training_set(quoted, image_size=8)) == 2


def test_float_images_are_stretched_not_clipped(tmp_path):
    ramp = np.linspace(0.0, 4.0, 64, dtype=np.float32).reshape(8, 8)    # an HDR range above 1.0
    Image.fromarray(ramp, "F").save(tmp_path / "hdr.tif")
    out = data_decode._decode(str(tmp_path / "hdr.tif"), 8, "L")[..., 0]
    assert out.min() == 0 and out.max() == 255 and len(np.unique(out)) > 32   # not one clipped block
    assert (np.diff(out.ravel().astype(int)) >= 0).all()
    negative = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    negative[0, 0] = np.nan
    Image.fromarray(negative, "F").save(tmp_path / "neg.tif")
    out = data_decode._decode(str(tmp_path / "neg.tif"), 8, "L")[..., 0]
    assert out[0, 1] < 10 and out[-1, -1] == 255 and out[0, 0] == 0


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((16, 32), np.uint8)
    pixels[:, :16] = 255                                   # left half white, as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6                                       # "rotate 90 degrees clockwise to view"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = data_decode._decode(str(tmp_path / "phone.jpg"), 16, "L")[..., 0].astype(int)
    assert out[:6].mean() > 200 and out[-6:].mean() < 50   # upright: the white half is on top


def test_decoding_threads_share_one_pixel_budget():
    import threading
    import time

    budget = data_decode.PixelBudget(100)
    inside, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with budget.take(n):                               # an image over the budget decodes alone
            with lock:
                inside[0] += min(n, 100)
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= min(n, 100)

    threads = [threading.Thread(target=work, args=(n,)) for n in (60, 60, 30, 30, 500)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert peak[0] <= 100 and inside[0] == 0
