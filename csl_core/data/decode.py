"""Decoding image files once into uint8 arrays: within a pixel and byte budget per image and across the
decoding threads, EXIF orientation applied, wide greyscale (16-bit, float) rescaled rather than clipped."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CSLError
from ..progress import progress_bar
from .types import ImageSource

#: Per image: at most this many pixels (a 64-megapixel photo is fine; a 13000 x 13000 PNG is not) and
#: this many bytes on disk. Across the decoding threads: at most DECODE_BUDGET_PIXELS pixels at once.
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 256 * 1024 * 1024
DECODE_BUDGET_PIXELS = 128_000_000


_ORIENTATION = 0x0112  # the EXIF tag


class TooLargeError(CSLError, ValueError):
    """An image over the per-image decode limits."""


class PixelBudget:
    """Pixels being decoded at once, across threads: ``take(n)`` waits until ``n`` more fit under the
    budget (an image as large as the whole budget waits until it decodes alone)."""

    def __init__(self, pixels: int):
        self.pixels = int(pixels)
        self._used = 0
        self._cond = threading.Condition()

    @contextmanager
    def take(self, n: int):
        n = min(int(n), self.pixels)
        with self._cond:
            self._cond.wait_for(lambda: self._used + n <= self.pixels)
            self._used += n
        try:
            yield
        finally:
            with self._cond:
                self._used -= n
                self._cond.notify_all()


def _decode(path: str, size: int, mode: str, budget: PixelBudget | None = None) -> np.ndarray:
    """Decode, turn upright (EXIF orientation), convert to ``mode`` and resize to ``size`` x ``size``.

    Raises on corrupt files, and :class:`TooLargeError` (before decoding) on files over
    :data:`MAX_IMAGE_BYTES` or images over :data:`MAX_IMAGE_PIXELS`; ``budget`` bounds the pixels
    decoded at once across threads."""
    file_size = os.path.getsize(path)
    if file_size > MAX_IMAGE_BYTES:
        raise TooLargeError(f"file of {file_size / 2**20:.0f} MiB is over the {MAX_IMAGE_BYTES // 2**20} MiB "
                            "limit per image")
    with Image.open(path) as img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise TooLargeError(f"{width} x {height} pixels is over the {MAX_IMAGE_PIXELS / 1e6:.0f}-megapixel "
                                "limit per image; downscale it first")
        with budget.take(width * height) if budget is not None else nullcontext():
            if img.format == "JPEG" and min(width, height) > 4 * size:
                img.draft(img.mode, (2 * size, 2 * size))  # decode a JPEG at reduced size: less memory
            img.load()
            img = upright(img)
            if img.mode != mode:
                img = img.convert(mode)
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]


def upright(img: Image.Image) -> Image.Image:
    """A loaded image as training sees it: turned upright by its EXIF orientation (as a viewer shows it;
    phones store photos sideways) and wide greyscale (16-bit, float) rescaled to 8 bits rather than clipped.
    The pages show an image through this too, so that what they show is what was trained on."""
    if img.getexif().get(_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode in WIDE_GREY_MODES:
        img = _to_8_bit(img)
    return img


# Greyscale wider than 8 bit (16-bit PNG and TIFF, 32-bit int, float): PIL's convert("L") clips it at 255.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_8_bit(img: Image.Image) -> Image.Image:
    """Rescale wide greyscale to 0-255 by its type's range: 16-bit integers by 65535 (as any viewer
    shows them); floats in [0, 1] by 1, whole-numbered floats in [0, 255] (8-bit data stored as
    float) as they are, and any other float range (HDR, negative values, physical units) stretched
    from its own minimum and maximum rather than clipped. NaN becomes 0.

    Converted a band of rows at a time, so that a large image costs its own pixels and a few MB more,
    not several float copies of itself."""
    raw = np.asarray(img)
    height = raw.shape[0] if raw.ndim else 0
    band = max(1, (1 << 21) // max(1, raw.shape[1] if raw.ndim > 1 else 1))
    offset, scale = 0.0, 1.0
    if img.mode.startswith("I;16") or (img.mode == "I" and raw.size and raw.max() > 255):
        scale = 1 / 257.0  # 65535 -> 255; a 16-bit PNG may open as "I"
    elif img.mode == "F" and raw.size:
        low, high, whole = np.inf, -np.inf, True
        for start in range(0, height, band):
            chunk = raw[start:start + band]
            finite = chunk[np.isfinite(chunk)]
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
                whole = whole and bool(np.all(finite == np.round(finite)))
        if not np.isfinite(low):
            low = high = 0.0
        if low >= 0 and high <= 1.0:
            scale = 255.0
        elif not (low >= 0 and high <= 255 and whole):  # HDR, negative or arbitrary-unit floats
            offset, scale = low, 255.0 / max(high - low, 1e-12)
    out = np.empty(raw.shape, np.uint8)
    for start in range(0, height, band):
        chunk = raw[start:start + band].astype(np.float32)
        if offset:
            chunk -= np.float32(offset)
        if scale != 1.0:
            chunk *= np.float32(scale)
        np.nan_to_num(chunk, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(chunk, 0, 255, out=chunk)
        out[start:start + band] = np.rint(chunk, out=chunk)
    return Image.fromarray(out, "L")


def _pick_mode(paths: list[str]) -> str:
    """Grayscale only when every readable file is; anything in colour makes the whole set RGB."""
    for path in paths:
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "1", "I;16", "I", "F"):
                    return "RGB"
        except Exception:
            continue
    return "L"


def decode_in_order(paths: list[str], *, image_size: int, progress: bool = False) -> tuple[np.ndarray, list[dict]]:
    """Every file of ``paths`` decoded, in order, ``(N, size, size, C)`` uint8, and the files that could not be
    (``{"id", "reason"}``): each of those gets a placeholder of its own noise, which is no other image's copy
    and no near duplicate of one, so that one unreadable file never stops a search over all the others."""
    decoded = decode_files(paths, [0] * len(paths), ["any"], image_size=image_size, progress=progress)
    if len(decoded) == len(paths):
        return decoded.images, []
    where = {path: row for row, path in enumerate(decoded.paths or [])}
    channels = decoded.images.shape[3] if len(decoded) else 3
    images = np.empty((len(paths), image_size, image_size, channels), np.uint8)
    for i, path in enumerate(paths):
        row = where.get(path)
        images[i] = decoded.images[row] if row is not None else np.random.default_rng(i).integers(
            0, 256, images.shape[1:], dtype=np.uint8)
    return images, decoded.skipped


def decode_files(paths: list[str], labels: list[int], classes: list[str], *, image_size: int,
                 ids: list[str] | None = None, progress: bool = False) -> ImageSource:
    """Decode every file once; unreadable ones are skipped and listed with the reason."""
    mode = _pick_mode(paths)
    channels = 3 if mode == "RGB" else 1

    budget = PixelBudget(DECODE_BUDGET_PIXELS)

    def work(path: str):
        try:
            return _decode(path, image_size, mode, budget), None
        except TooLargeError as e:
            return None, f"too large to decode ({e})"
        except UnidentifiedImageError:
            return None, "not an image (PIL cannot identify the file)"
        except Exception as e:  # PIL raises many types for damaged files; each one only skips that file
            return None, f"corrupt or truncated image ({type(e).__name__}: {e})"

    results = []
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        iterator = pool.map(work, paths, chunksize=64)
        if progress:
            iterator = progress_bar(iterator, total=len(paths), desc="decoding images")
        results = list(iterator)
    keep = [i for i, (arr, _) in enumerate(results) if arr is not None]
    ids = ids or paths
    skipped = [{"id": ids[i], "reason": err} for i, (_, err) in enumerate(results) if err is not None]
    images = (np.stack([results[i][0] for i in keep]) if keep
              else np.zeros((0, image_size, image_size, channels), np.uint8))
    return ImageSource(images, np.asarray([labels[i] for i in keep], dtype=np.int64), classes,
                       [ids[i] for i in keep], paths=[paths[i] for i in keep], skipped=skipped)
