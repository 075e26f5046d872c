"""Reading datasets (JSONL or CSV) into validated :class:`Item` records.

Every problem in the file is collected before anything runs, so one error names each bad line
and field at once instead of failing on the first and losing the rest.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from flows.data.records import Item
from refine.errors import FieldProblem, InputError
from refine.jsonl import not_utf8, parse_jsonl

__all__ = ["read_items", "read_rows"]

RESERVED = ("id", "reference")


def read_items(path: Path) -> list[Item]:
    """All rows of ``path`` as Items; raises InputError listing every bad line."""
    items, problems = read_rows(path)
    if problems:
        raise InputError(path, problems)
    return items


def read_rows(path: Path) -> tuple[list[Item], list[FieldProblem]]:
    """The good rows of ``path`` as Items, and a problem for each bad line, sorted by line.

    A problem on line 0 concerns the whole file (no rows); a missing or unreadable file, or an
    unknown format, raises InputError. A duplicate id keeps its first row: the later ones are
    problems.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, [FieldProblem(0, None, "file not found")]) from None
    except OSError as exc:
        raise InputError(path, [FieldProblem(0, None, f"cannot read: {exc.strerror}")]) from None
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        rows, problems = parse_jsonl(data)
    elif suffix == ".csv":
        rows, problems = _csv_rows(data)
    else:
        raise InputError(path, [FieldProblem(0, None, "unknown format: use .jsonl or .csv")])
    items = _to_items(rows, problems)
    if not items and not problems:
        problems.append(FieldProblem(0, None, "the file has no rows"))
    return items, sorted(problems, key=lambda p: p.line)


def _csv_rows(data: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[FieldProblem]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # A newline byte never occurs inside a UTF-8 sequence, so each line decodes on its own.
        return [], [p for n, raw in enumerate(data.split(b"\n"), 1) if (p := not_utf8(n, raw))]
    # csv.reader, not DictReader: DictReader skips blank lines itself, hiding where a record
    # starts, and ``line_num`` after a read is the record's last line, not its first.
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[FieldProblem] = []
    start = 1  # the physical line the next record starts on
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row:  # a blank line
                continue
            if header is None:
                header = row
            elif len(row) > len(header):
                problems.append(FieldProblem(line, None, "more values than header columns"))
            else:
                # A short row leaves columns unset: they stay out so the template check names them.
                rows.append((line, dict(zip(header, row, strict=False))))
    except csv.Error as exc:
        problems.append(FieldProblem(start, None, f"bad CSV: {exc}"))
    if header is None:
        problems.append(FieldProblem(1, None, "no header row"))
    return rows, problems


def _to_items(rows: list[tuple[int, dict[str, Any]]], problems: list[FieldProblem]) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        raw_id = row.get("id", line)
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            problems.append(FieldProblem(line, "id", "must be a non-empty string or integer"))
            continue
        item_id = str(raw_id)
        if item_id in seen:
            problems.append(
                FieldProblem(
                    line, "id", f"duplicate id {item_id!r} (first on line {seen[item_id]})"
                )
            )
            continue
        seen[item_id] = line
        fields = {k: v for k, v in row.items() if k not in RESERVED}
        items.append(Item(id=item_id, line=line, fields=fields, reference=row.get("reference")))
    return items
