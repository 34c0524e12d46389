"""What keeps a table readable at 1280 px with long class names and paths: the width a column needs for its header
and values (so a header is never cut mid-word; a wide table scrolls sideways instead). Paths and names are
shortened in the middle by :func:`pages._text.middle` (a number of characters) or :func:`middle_html` (as wide as
the box they are in)."""
from __future__ import annotations

import html
import unicodedata

from pages._text import isolated

# Pixels a character takes at the tables' 14 px Source Sans, rounded up (an upper bound per kind of character,
# checked against the browser's own measure by tests/browser/test_page_widths.py).
_NARROW = set("iljtfrI!|.,:;'()[]{}/\\ -")
_WIDE = set("mwMW@%&…")
NARROW_PX, DIGIT_PX, LOWER_PX, UPPER_PX, WIDE_PX = 5.0, 7.0, 7.8, 9.2, 13.5
FULL_PX = 15.0
SELECT_SCALE = 16 / 14           # a select box's text is 16 px
CELL_PADDING_PX = 2 * 8 + 4      # the grid's padding either side, and a little room
HEADER_EXTRA_PX = 4              # a header's text sits a little wider


def text_px(text: str) -> float:
    """An upper bound of the width of ``text`` in pixels at the tables' font."""
    total = 0.0
    for char in str(text):
        if char in _NARROW:
            total += NARROW_PX
        elif char in _WIDE:
            total += WIDE_PX
        elif unicodedata.east_asian_width(char) in "WF":   # a CJK character is as wide as the font is tall
            total += FULL_PX
        elif char.isdigit():
            total += DIGIT_PX
        elif char.isupper():
            total += UPPER_PX
        else:
            total += LOWER_PX
    return total


def column_px(header: str, values=(), *, at_least: int = 40, at_most: int = 480) -> int:
    """Pixels for a table column headed ``header`` holding ``values``: the header whole (never cut mid-word) and
    every value up to ``at_most`` (a longer value is shortened by the page before it gets here)."""
    need = max([text_px(header) + HEADER_EXTRA_PX, *(text_px(v) for v in values)]) + CELL_PADDING_PX
    return int(min(max(at_least, need), max(at_most, text_px(header) + HEADER_EXTRA_PX + CELL_PADDING_PX)))


def select_px(options, *, at_least: int = 170) -> int:
    """Pixels a select box needs to show the longest of ``options`` whole (its padding and arrow included)."""
    return int(max(at_least, max((text_px(o) for o in options), default=0) * SELECT_SCALE + 64))


def middle_html(text: str, *, tail: int = 8) -> str:
    """``text`` (a path) on one line as wide as its box: its end (``tail`` characters, the file name's end) always
    shown, the start cut with "…" where the box is narrower; the whole on hover (``title``). HTML, every part
    escaped (for ``st.markdown(..., unsafe_allow_html=True)``)."""
    text = isolated(text).strip("\u2068\u2069")   # no control or direction character; each part isolated below
    start, end = (text[:-tail], text[-tail:]) if len(text) > tail else ("", text)
    start, end = html.escape(isolated(start)), html.escape(isolated(end))
    return (f'<div class="csl-middle" title="{html.escape(text, quote=True)}" style="display:flex;white-space:nowrap;'
            'min-width:0;max-width:100%;font-size:0.85rem">'
            '<span style="overflow:hidden;text-overflow:ellipsis;min-width:1.2em;flex:0 1 auto">'
            f'{start}</span><span style="flex:none">{end}</span></div>')
