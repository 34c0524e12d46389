"""Text from a run (class names, sample ids, file names, sources, error messages) as the pages show it:
never as Markdown, never reordering the text around it.

Streamlit renders ``st.markdown``, ``st.caption``, ``st.info`` and widget labels as Markdown, so a class
named ``![x](http://host/t.png)`` would make the browser fetch an outside image and ``:red[..]`` or ``**``
would format. :func:`plain` escapes every Markdown character, breaks Streamlit's ``:directive:`` syntax,
and isolates the text's direction (a U+202E in a class name would otherwise reverse the rest of the
line); :func:`isolated` does the last part only, for plain-text places (select options, components that
set ``textContent``). Long names are shortened with an ellipsis where a line is narrow."""
from __future__ import annotations

import re
import unicodedata

#: Directional formatting characters (embeddings, overrides, isolates, marks): removed from shown text.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~$&@])")   # the characters that format, link or embed inline
_WWW = re.compile(r"www(?=\.)", re.IGNORECASE)
_DIRECTIVE = re.compile(r":(?=[\w/])")                  # :red[..], :smile:, :material/x:, http://
FSI, PDI = "\u2068", "\u2069"   # first strong isolate ... pop directional isolate
ZWSP = "\u200b"


def isolated(text: object, limit: int | None = None) -> str:
    """``text`` with its directional controls removed, control characters as spaces, at most ``limit``
    characters (an ellipsis ends a shortened one), and wrapped in a directional isolate when it holds
    right-to-left letters (so that it cannot reorder the text around it)."""
    text = _CONTROL.sub(" ", _BIDI.sub("", str(text)))
    if limit is not None and len(text) > limit:
        text = text[: max(1, limit - 1)] + "…"
    if any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in text):
        return f"{FSI}{text}{PDI}"
    return text


def middle(text: object, limit: int) -> str:
    """``text`` (a file path, a sample id) at most ``limit`` characters on one line, shortened in the middle
    (``ab…yz``) so that both its start (the folder) and its end (the file name) stay readable; plain text,
    :func:`isolated`. Show the whole text on hover (a ``help=`` or ``title``)."""
    text = _CONTROL.sub(" ", _BIDI.sub("", str(text)))
    if len(text) > limit:
        tail = max(1, (limit - 1) * 3 // 5)   # the file name matters most: more of the end is kept
        text = text[: max(1, limit - 1 - tail)] + "…" + text[-tail:]
    return isolated(text)


def plain(text: object, limit: int | None = None) -> str:
    """``text`` for a Markdown place, shown exactly as written: every character that formats, links or embeds
    escaped, a zero-width space after a ``:`` that starts a word (no emoji shortcode, ``:red[...]`` or
    ``http://`` autolink can form; newlines are spaces, so no block can start), and isolated (:func:`isolated`)."""
    body = _DIRECTIVE.sub(":" + ZWSP, _MARKDOWN.sub(r"\\\1", isolated(text, limit)))
    return _WWW.sub("www" + ZWSP, body)   # and no www. autolink


def text_table(frame):
    """``frame`` (a DataFrame for ``st.dataframe``) with every text cell :func:`isolated`: a directional control in
    a class name, file name or note never reorders a table's row."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or str(frame[column].dtype) in ("str", "string", "category"):
            frame[column] = frame[column].astype(object).map(lambda v: isolated(v) if isinstance(v, str) else v)
    if frame.index.dtype == object or str(frame.index.dtype) in ("str", "string"):
        frame.index = [isolated(v) if isinstance(v, str) else v for v in frame.index]
    return frame


def plain_list(names, limit: int | None = None) -> list[str]:
    """:func:`isolated` of every name (class names for a component or a select)."""
    return [isolated(name, limit) for name in names]


def in_plot(text: object, limit: int = 80) -> str:
    """``text`` for a Plotly title, legend or hover label: its HTML subset and ``%{...}`` placeholders escaped."""
    import html

    return html.escape(isolated(text, limit)).replace("%{", "%&#123;")
