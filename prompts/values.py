"""How a value prints in a prompt: ``{{ value }}`` in any template goes through :func:`show_value`.

The template environment (:mod:`prompts.loader`) installs it as Jinja's ``finalize``, so every
template, packaged or the user's, shows row values the same way.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping

__all__ = ["empty_value", "kind_of", "not_text", "show_value", "visible_text"]


def show_value(value: object) -> object:
    """What ``{{ value }}`` prints: JSON text for objects and lists, JSON's ``true``/``false``
    for booleans, nothing for None; anything else as Jinja prints it (text as is, numbers).

    Row fields come from JSON (or CSV), so a nested value and a top-level one read the same way
    in the prompt as in the data: ``{"ok": true}`` and ``true``, never Python's ``{'ok': True}``
    and ``True``. None is an absent optional value (the templates test for it), so it shows as
    nothing rather than Python's ``None``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


_IGNORABLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]
)
"""Marks and fillers that show nothing (Unicode's Default_Ignorable_Code_Point in
DerivedCoreProperties.txt, beside the Cf and Cc characters): the combining grapheme joiner,
Hangul fillers and the variation selectors."""


_ASCII_INVISIBLE = dict.fromkeys([*range(0x21), 0x7F])
"""What :func:`visible_text` drops of ASCII: the control characters (Cc: 0x00-0x1F and 0x7F,
tab and newline among them) and the space; ASCII holds no Cf character."""


def visible_text(text: str) -> str:
    """``text`` without whitespace, control characters (Unicode category Cc: NUL, ESC, ...),
    invisible format characters (Cf: U+200B zero-width space, U+200C, U+200D, U+2060, U+FEFF, the
    soft hyphen U+00AD, ...) and the other marks that show nothing (:data:`_IGNORABLE`).

    Empty when the text would show nothing, in a prompt or as an answer: ``str.strip`` alone
    keeps U+200B and U+FEFF, which ``str.isspace`` does not count as whitespace. ASCII text, the
    common case, is filtered in one ``str.translate`` (each answer of a run is checked a few
    times, and a loop over its characters cost a cached re-run about a third of its time).
    """
    if text.isascii():
        return text.translate(_ASCII_INVISIBLE)
    return "".join(
        char
        for char in text
        if not char.isspace()
        and unicodedata.category(char) not in ("Cf", "Cc")
        and ord(char) not in _IGNORABLE
    )


def empty_value(value: object) -> str | None:
    """Why ``value`` gives a template nothing to show although it is not null, empty or only
    whitespace (those are :func:`prompts.analysis.no_value`'s): ``"holds only invisible
    characters"`` for text of only whitespace and format characters (:func:`visible_text`),
    ``"is empty"`` for ``[]`` and ``{}``, ``"holds only null or empty values"`` for a list or
    object whose every value is null, NaN, empty text or itself empty (``[null]``,
    ``{"a": ""}``, ``[[], {}]``); None when it is a value (``0`` and ``false`` are values).
    """
    if isinstance(value, str):
        if value.strip() and not visible_text(value):
            return "holds only invisible characters"
        return None
    if isinstance(value, Mapping | list | tuple):
        if not value:
            return "is empty"
        if all(_holds_nothing(item) for item in _members(value)):
            return "holds only null or empty values"
    return None


def _members(value: Mapping[object, object] | list[object] | tuple[object, ...]) -> list[object]:
    return list(value.values()) if isinstance(value, Mapping) else list(value)


def _holds_nothing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not visible_text(value)
    if isinstance(value, Mapping | list | tuple):
        return all(_holds_nothing(item) for item in _members(value))
    return False


def kind_of(value: object) -> str:
    """What ``value`` is, in the words of a JSON row: ``"a boolean"``, ``"a number"``, ``"a
    list"``, ``"an object"``, ``"text"`` or ``"null"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def not_text(value: object) -> str | None:
    """``"must be text, not a boolean"`` (a number, a list, an object) for a field that only
    text fits, e.g. translate's ``target_lang`` (``false`` would print as "the false
    translation"); None for text and for None (an absent optional value)."""
    if value is None or isinstance(value, str):
        return None
    return f"must be text, not {kind_of(value)}"
