"""Reading JSON Lines into objects, with every bad line reported instead of the first only.

Shared by the dataset reader (flows) and the few-shot demo loader (prompts), which both need
the same line-level checks: UTF-8, valid JSON (no ``NaN``/``Infinity``, which Python's json
accepts but JSON is not), one object a line, and text that is valid Unicode throughout.
"""

from __future__ import annotations

import codecs
import json
import math
from collections import Counter
from typing import Any

from refine.errors import FieldProblem

__all__ = [
    "JSON_FAILURES",
    "MAX_ROW_DEPTH",
    "NESTED_TOO_DEEP",
    "not_unicode",
    "not_utf8",
    "parse_jsonl",
    "unpaired_surrogate",
    "why_not_json",
]

Rows = list[tuple[int, dict[str, Any]]]

JSON_FAILURES: tuple[type[Exception], ...] = (ValueError, RecursionError)
"""What parsing hostile text can raise, to catch at every parse of text from outside: ValueError
(json's and orjson's ``JSONDecodeError``, bytes that are not UTF-8) and RecursionError, which
the standard library's parser raises on nesting deeper than the stack (``"[" * 5000``) and which
is not a ValueError. Walking a parsed value recursively can raise RecursionError too."""

NESTED_TOO_DEEP = "nested too deep"

MAX_ROW_DEPTH = 200
"""Levels of arrays and objects a row may nest (the row itself is level 1). A row nested deeper
parses, but every later recursive walk of it (the Unicode check, the templates, json.dumps
when shards are written, orjson's 255 levels) could hit the stack's limit mid-run; no real
dataset nests this deep, so such a row is its line's problem up front."""


def _depth(value: object) -> int:
    """How many levels of arrays and objects ``value`` nests, walked without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def why_not_json(exc: BaseException) -> str:
    """Why a parse failed, from one of :data:`JSON_FAILURES`: the parser's message without its
    position, or :data:`NESTED_TOO_DEEP`."""
    if isinstance(exc, RecursionError):
        return NESTED_TOO_DEEP
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    return str(exc)


class _NotJson(ValueError):
    """A number JSON cannot hold, raised from inside ``json.loads`` to end that line's parse."""


def not_utf8(line: int, raw: bytes) -> FieldProblem | None:
    """A problem for ``raw`` if it is not UTF-8, naming the byte within the line."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FieldProblem(line, None, f"not UTF-8 (byte {exc.start + 1} of the line)")
    return None


def unpaired_surrogate(text: str) -> str | None:
    """Why ``text`` is not valid Unicode, or None when it is.

    A JSON ``\\ud83d`` escape without its other half decodes to a lone surrogate, which no
    UTF-8 encoder (the cache key, the request body, the output file) accepts. The answer reads
    ``holds an unpaired surrogate \\ud83d at character 19: not valid Unicode`` (1-based).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = f"\\u{ord(text[exc.start]):04x}"
        return f"holds an unpaired surrogate {char} at character {exc.start + 1}: not valid Unicode"
    return None


def not_unicode(line: int, row: dict[str, Any]) -> list[FieldProblem]:
    """A problem for each key or string of ``row`` (nested ones too) that is not valid Unicode.

    The field is named by its path (``meta.tags[1]``); a key is shown with the bad character
    escaped, since the name itself cannot be printed.
    """
    return [FieldProblem(line, name, why) for name, why in _bad_strings(row, "")]


def _bad_strings(value: object, path: str) -> list[tuple[str, str]]:
    """``(path, why)`` for each bad string under ``value``; ``path`` is where ``value`` sits."""
    if isinstance(value, str):
        why = unpaired_surrogate(value)
        return [(path, why)] if why else []
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
            name = f"{path}.{shown}" if path else shown
            if why := unpaired_surrogate(key):
                found.append((name, f"its name {why}"))
            found += _bad_strings(child, name)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _bad_strings(child, f"{path}[{index}]")
    return found


def _constant(name: str) -> float:
    raise _NotJson(f'{name} is not a JSON value; write null, or the text as a string "{name}"')


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotJson(f"the number {text} is too large for a 64-bit float; write it as a string")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row = dict(pairs)
    if len(row) < len(pairs):  # json would keep the last value and drop the other silently
        counts = Counter(key for key, _ in pairs)
        twice = next(key for key, _ in pairs if counts[key] > 1)
        shown = twice.encode("utf-8", "backslashreplace").decode("utf-8")
        raise _NotJson(f"the key '{shown}' appears twice in one object")
    return row


def _load_object(number: int, text: str) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    """One line's object, or None and why not."""
    try:
        row = json.loads(
            text, parse_constant=_constant, parse_float=_finite, object_pairs_hook=_unique_keys
        )
    except JSON_FAILURES as exc:  # a row nested deeper than the stack is that line's problem
        return None, [FieldProblem(number, None, f"not valid JSON: {why_not_json(exc)}")]
    if not isinstance(row, dict):
        return None, [FieldProblem(number, None, "a row must be a JSON object")]
    if (depth := _depth(row)) > MAX_ROW_DEPTH:
        why = f"{NESTED_TOO_DEEP}: {depth} levels of arrays and objects, at most {MAX_ROW_DEPTH}"
        return None, [FieldProblem(number, None, why)]
    bad = not_unicode(number, row)
    return (None, bad) if bad else (row, [])


def parse_jsonl(data: bytes) -> tuple[Rows, list[FieldProblem]]:
    """``(line number, object)`` for each non-blank line, and a problem for each bad one.

    A line is bad when it is not UTF-8, not JSON (``NaN``, ``Infinity`` and numbers past a
    float's range included: Python's json would read them as floats that render as ``nan``; an
    object naming a key twice too: json would keep one value silently), not an object, or holds
    a string or key that is not valid Unicode (each one named).
    """
    rows: Rows = []
    problems: list[FieldProblem] = []
    data = data.removeprefix(codecs.BOM_UTF8)  # editors on Windows write one
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if problem := not_utf8(number, raw):
            problems.append(problem)
            continue
        text = raw.decode("utf-8")
        if not text.strip():
            continue
        row, found = _load_object(number, text)
        problems += found
        if row is not None:
            rows.append((number, row))
    return rows, problems
