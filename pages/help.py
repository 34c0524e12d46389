"""Help: the project's documentation (README.md and docs/*.md), read from the files installed beside the
dashboard, so it works offline. Images are served by the app; links between the documents open them here, in
the same tab."""
from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from pages._common import RUN_KEY

ROOT = Path(__file__).resolve().parents[1]
# The documents, in the order a newcomer reads them: file -> title in the picker.
DOCUMENTS = {
    "README.md": "Start here (README)",
    "docs/dashboard.md": "The dashboard, page by page",
    "docs/cli.md": "Command line",
    "docs/formats.md": "Data in and out",
    "docs/api.md": "The library and your own training",
    "docs/benchmarks.md": "Measured figures",
    "docs/bench/trust.md": "Measured: the count, the audit, the cleaning",
    "docs/bench/duplicates.md": "Measured: duplicates",
    "docs/security.md": "Safety, and serving the dashboard to others",
    "docs/architecture.md": "Architecture (for developers)",
}
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$")
LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def document_key(target: str, source: str) -> str | None:
    """The ``DOCUMENTS`` key a link ``target`` in document ``source`` leads to, or ``None`` (not shipped)."""
    resolved = (ROOT / source).parent.joinpath(target).resolve()
    try:
        key = resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return None
    return key if key in DOCUMENTS else None


def document_address(key: str) -> str:
    """The address of document ``key`` on this page, with the open run (a link reloads the app in this tab)."""
    query = {"doc": key}
    run = st.session_state.get(RUN_KEY)
    if run:
        query["run"] = run
    return "/documentation?" + urlencode(query)


def _no_html(line: str) -> str:
    """A line of a document with every ``<`` outside code spans shown as text: the page renders the links it
    makes as HTML (to open them in this tab), never what a document says."""
    parts = line.split("`")
    return "`".join(part.replace("<", "&lt;") if i % 2 == 0 else part for i, part in enumerate(parts))


def render(source: str) -> None:
    """Draw ``source`` (a ``DOCUMENTS`` key): its markdown, its images from disk, its links to the other
    documents as links to this page."""
    path = ROOT / source
    if not path.is_file():
        st.warning(f"{source} is not installed beside the dashboard; the documentation is in the project's "
                   "repository.")
        return
    text = path.read_text(encoding="utf-8")

    def relink(match: re.Match) -> str:
        text, target = match.groups()
        if re.match(r"[a-z]+:|#", target):   # a web address or a place in this document: as written
            return match.group(0)
        key = document_key(target.split("#")[0], source)
        if key:   # opens here, in this tab, the open run kept
            return f'<a href="{html.escape(document_address(key), quote=True)}" target="_self">{text}</a>'
        shown = (ROOT / source).parent.joinpath(target).resolve()
        where = shown.relative_to(ROOT).as_posix() if shown.is_relative_to(ROOT) else target
        if text.strip("`").rstrip("/") == where.rstrip("/"):
            return f"`{where}`"
        return f"{text} (`{where}` in the project folder)"

    chunk: list[str] = []
    in_code = False
    for line in text.splitlines():
        in_code ^= line.lstrip().startswith("```")
        image = None if in_code else IMAGE.match(line)
        if image:
            st.markdown("\n".join(chunk), unsafe_allow_html=True)
            chunk = []
            picture = (path.parent / image.group(2)).resolve()
            if picture.is_file() and picture.is_relative_to(ROOT):
                st.image(str(picture), caption=image.group(1))
            continue
        chunk.append(line if in_code else LINK.sub(relink, _no_html(line)))
    st.markdown("\n".join(chunk), unsafe_allow_html=True)   # the documents' own text is never HTML: _no_html


st.title("Help")
asked = st.query_params.get("doc")
if asked in DOCUMENTS and "help_doc" not in st.session_state:   # a link from another document
    st.session_state["help_doc"] = asked
choice = st.selectbox("Document", list(DOCUMENTS), key="help_doc", format_func=DOCUMENTS.get,
                      help="The project's documentation as installed with the dashboard (no internet needed).")
st.query_params["doc"] = choice
render(choice)
