"""Reading JSON Lines into objects, with every bad line reported instead of the first only.

Shared by the dataset reader (flows) and the few-shot demo loader (prompts), which both need
the same line-level checks: UTF-8, valid JSON, one object a line.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from refine.errors import FieldProblem

__all__ = ["not_utf8", "parse_jsonl"]

Rows = list[tuple[int, dict[str, Any]]]


def not_utf8(line: int, raw: bytes) -> FieldProblem | None:
    """A problem for ``raw`` if it is not UTF-8, naming the byte within the line."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FieldProblem(line, None, f"not UTF-8 (byte {exc.start + 1} of the line)")
    return None


def parse_jsonl(data: bytes) -> tuple[Rows, list[FieldProblem]]:
    """``(line number, object)`` for each non-blank line, and a problem for each bad one."""
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
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(FieldProblem(number, None, f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(row, dict):
            problems.append(FieldProblem(number, None, "a row must be a JSON object"))
            continue
        rows.append((number, row))
    return rows, problems
