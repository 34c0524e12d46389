"""Class names where they enter (folder names, label columns, given class lists, RunWriter): in Unicode's
composed form (NFC), so that "café" typed and "café" from a macOS folder name are one class, and never with
an invisible character (zero-width space, bidi control, byte order mark, soft hyphen), which makes two
classes look the same or a name display reversed."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .types import DataError

#: Characters that show nothing (or reorder what follows) in a class name.
INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def class_name(name: object, where: str) -> str:
    """``name`` in NFC; :class:`DataError` naming ``where`` and the character when it holds an invisible one."""
    text = unicodedata.normalize("NFC", str(name))
    found = INVISIBLE.search(text)
    if found:
        raise DataError(f"{where}: class name {text!r} holds the invisible character U+{ord(found.group()):04X} "
                        f"({unicodedata.name(found.group(), 'a format character')}), which makes it look like "
                        "another name; remove it")
    return text


def class_names(names: Iterable[object], where: str) -> list[str]:
    """Every name through :func:`class_name`; two that become the same (one composed, one decomposed) are
    refused: they would look like one class."""
    out: list[str] = []
    for name in names:
        text = class_name(name, where)
        if text in out:
            raise DataError(f"{where}: class names {text!r} and {str(name)!r} are the same text in two Unicode "
                            "forms (composed and decomposed); rename or merge them into one class")
        out.append(text)
    return out
