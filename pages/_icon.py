"""The dashboard's favicon, drawn here and served by the app itself (``/media/...``). A Material icon or emoji
as ``page_icon`` makes every browser fetch the favicon from a font CDN; this tool sends nothing anywhere."""
from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw


@lru_cache(maxsize=1)
def app_icon() -> Image.Image:
    """A 64 x 64 label tag with a check mark, in Streamlit's primary red."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.polygon([(4, 14), (40, 14), (60, 32), (40, 50), (4, 50)], fill=(255, 75, 75, 255))
    draw.line([(13, 32), (22, 41), (38, 23)], fill=(255, 255, 255, 255), width=6, joint="curve")
    return image
