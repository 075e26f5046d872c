"""Reading JSONL and CSV datasets into validated :class:`Item` records.

Every problem in the file is collected before anything runs, so one error names each bad line
and field at once instead of failing on the first and losing the rest. A bad record is a problem
of that record alone: reading always goes on to the next one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from flows.data.records import Item
from refine.errors import FieldProblem, InputError
from refine.jsonl import parse_jsonl

__all__ = [
    "CSV_MISSING_VALUES",
    "UNKNOWN_FORMAT",
    "parse_text_file",
    "read_items",
    "read_rows",
    "rows_found",
    "to_items",
]

UNKNOWN_FORMAT = (
    "unknown format: use .jsonl, .csv, .parquet, a folder saved by Hugging Face datasets' "
    "save_to_disk, or a Hub dataset name (owner/name)"
)

RESERVED = ("id", "reference")

Rows = list[tuple[int, dict[str, Any]]]

CSV_MISSING_VALUES: frozenset[str] = frozenset(
    {"NaN", "nan", "null", "NULL", "None", "#N/A", "<NA>"}
)
"""CSV cells that are a missing value written as text, refused in a field a template uses.

CSV has no null: a program that exports a missing value writes some spelling of one, and the
prompt would then say ``nan``. These are the spellings programs write when they turn a missing
value into text (pandas ``nan``/``<NA>``, Python ``None``, JavaScript and R ``null``/``NaN``, SQL
``NULL``, Excel ``#N/A``). Words people type that often mean "not applicable" (``NA``, ``N/A``,
``none``) are left alone: they can be real content. JSONL is not checked this way: it has
``null``, so a string ``"None"`` there is what its writer meant. Compared after stripping spaces.
"""

_FIELD = re.compile(r'"(?P<quoted>(?:[^"]|"")*+)(?P<closed>"?)(?P<rest>[^,\r\n]*)|[^,\r\n]*')
"""One CSV field as Python's csv reader (excel dialect) reads it: a quoted field (``""`` is a
quote; text after the closing quote is kept, as csv does) or plain text up to a comma or line end.
The possessive ``*+`` keeps ``"a"",b`` from backtracking into a reading csv would not make."""

_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")  # LE, BE; UTF-32 BE
_UTF32_MARKS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")  # UTF-32 LE starts as UTF-16 LE
_Match = re.Match[str]
_NEWLINE = re.compile(r"\r\n|\r|\n")
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what ``surrogateescape`` makes of a non-UTF-8 byte


def read_items(path: Path) -> list[Item]:
    """All rows of ``path`` as Items; raises InputError listing every bad line."""
    items, problems = read_rows(path)
    if problems:
        raise InputError(path, problems)
    return items


def parse_text_file(path: Path) -> tuple[Rows, list[FieldProblem]]:
    """The records of a JSONL or CSV file as ``(line, row)``, and a problem for each bad line.

    Raises InputError for a missing or unreadable file, a UTF-16/32 one or an unknown format.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, [FieldProblem(0, None, "file not found")]) from None
    except OSError as exc:
        raise InputError(path, [FieldProblem(0, None, f"cannot read: {exc.strerror}")]) from None
    if data.startswith(_UTF16_MARKS):  # every line would read "not UTF-8", never saying why
        width = "32" if data.startswith(_UTF32_MARKS) else "16"
        problem = f"the file is UTF-{width} (it starts with its byte-order mark): save it as UTF-8"
        raise InputError(path, [FieldProblem(0, None, problem)])
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        rows, problems = parse_jsonl(data)
    elif suffix == ".csv":
        rows, problems = _csv_rows(data)
    else:
        raise InputError(path, [FieldProblem(0, None, UNKNOWN_FORMAT)])
    return rows, problems


def read_rows(path: Path) -> tuple[list[Item], list[FieldProblem]]:
    """The good rows of ``path`` (JSONL or CSV) as Items, and a problem for each bad line,
    sorted by line.

    A problem on line 0 concerns the whole file (no rows); a missing or unreadable file, or an
    unknown format, raises InputError. A duplicate id keeps its first row: the later ones are
    problems.
    """
    rows, problems = parse_text_file(path)
    items = to_items(rows, problems, {})
    if not items and not problems:
        problems.append(FieldProblem(0, None, "the file has no rows"))
    return items, sorted(problems, key=lambda p: p.line)


def rows_found(items: list[Item], problems: list[FieldProblem]) -> int:
    """How many rows (records) :func:`read_rows` found: its good rows plus each bad row once.

    Blank lines, a CSV header and lines an unclosed quote swallowed are not rows; every row is
    either good or named by the line of its problems.
    """
    return len(items) + len({problem.line for problem in problems if problem.line > 0})


@dataclass(frozen=True)
class _Record:
    """One CSV record: its values, its first line, and why it cannot be used (``problem``, and
    the index of the column it concerns, if any)."""

    line: int
    values: list[str]
    problem: str | None = None
    column: int | None = None


def _csv_rows(data: bytes) -> tuple[Rows, list[FieldProblem]]:
    """The records of a CSV file as ``(first line, {column: value})``, and a problem for each bad
    record; a bad header ends the read (no record can be a row without it).

    Parsed here rather than by :mod:`csv`, whose reader stops for good at a field over
    ``csv.field_size_limit`` (a process-wide setting, 131,072 characters by default: raising it
    would change it for every other reader in the process) and silently reads a quote that is
    never closed to the end of the file. Here every record is read: a long field is the row's
    problem once it passes ``max_prompt_chars`` (see ``flows.loop.preflight``), bytes that are
    not UTF-8 are a problem of their record alone, and an unclosed quote is reported with the
    line it opens on and how many lines it swallowed. Values are read as csv's excel dialect
    reads them.
    """
    # A bad byte survives as a lone surrogate (U+DC80-U+DCFF), which strict UTF-8 decoding never
    # yields, so each record can say whether it holds one while the others are read normally.
    text = data.decode("utf-8-sig", errors="surrogateescape")
    header: list[str] | None = None
    rows: Rows = []
    problems: list[FieldProblem] = []
    for record in _records(text):
        if record.problem is not None:
            column = None
            if header is not None and record.column is not None and record.column < len(header):
                column = header[record.column]
            problems.append(FieldProblem(record.line, column, record.problem))
            if header is None:
                lost = _last_line(text) - record.line
                problems.append(FieldProblem(record.line, None, _no_header(lost)))
                return rows, problems
        elif header is None:
            header = record.values
            problems += _header_problems(header, record.line)
        elif len(record.values) > len(header):
            problems.append(FieldProblem(record.line, None, "more values than header columns"))
        else:
            # A short row leaves columns unset: they stay out so the template check names them.
            rows.append((record.line, dict(zip(header, record.values, strict=False))))
    if header is None:
        problems.append(FieldProblem(1, None, "no header row"))
    return rows, problems


def _header_problems(header: list[str], line: int) -> list[FieldProblem]:
    """A column named twice would keep only its last value in each row: the file is ambiguous."""
    twice = sorted({name for name in header if header.count(name) > 1})
    return [
        FieldProblem(0, name, f"column named twice in the header (line {line})") for name in twice
    ]


def _records(text: str) -> Iterator[_Record]:
    """Every non-blank record of ``text`` in order; one whose quote never closes is the last."""
    pos, line = 0, 1
    any_bad = _BAD_BYTE.search(text) is not None
    while pos < len(text):
        start, first = pos, line
        values, end, unclosed = _values(text, pos)
        line += _count_lines(text, start, end)
        newline = _NEWLINE.match(text, end)
        pos = newline.end() if newline else end
        if unclosed is not None:
            column, quote = unclosed
            yield _Record(
                first, values, _unclosed(text, first + _count_lines(text, start, quote)), column
            )
            return
        line += 1 if newline else 0
        if end > start:  # else a blank line
            yield _Record(first, values, _not_utf8(text, start, end, first) if any_bad else None)


def _values(text: str, pos: int) -> tuple[list[str], int, tuple[int, int] | None]:
    """The values of the record at ``pos``, where it ends (before its newline), and for a quote
    never closed, ``(its column's index, its position)``."""
    values: list[str] = []
    match_field = _FIELD.match
    while True:
        match = cast(_Match, match_field(text, pos))  # the pattern matches "" too
        quoted, closed, rest = match.group("quoted", "closed", "rest")
        if quoted is None:
            values.append(match.group())
        else:
            values.append(quoted.replace('""', '"') + rest)
            if not closed:
                return values, match.end(), (len(values) - 1, pos)
        pos = match.end()
        if text[pos : pos + 1] != ",":
            return values, pos, None
        pos += 1


def _count_lines(text: str, start: int, end: int) -> int:
    """The line breaks between ``start`` and ``end`` (``\r\n``, ``\r`` or ``\n``)."""
    crlf = text.count("\r\n", start, end)
    return text.count("\n", start, end) + text.count("\r", start, end) - crlf


def _last_line(text: str) -> int:
    """The number of the last line of ``text`` (a final line break ends a line, starts none)."""
    return _count_lines(text, 0, len(text)) + (0 if text.endswith(("\n", "\r")) else 1)


def _no_header(lost: int) -> str:
    """The problem of a header that cannot be read, with ``lost`` lines after it."""
    return f"the header cannot be read, so none of the {lost} line(s) after it were read as rows"


def _unclosed(text: str, quote_line: int) -> str:
    """The problem of a quote opened on ``quote_line`` that runs to the end of the file."""
    lost = _last_line(text) - quote_line
    after = f", so the {lost} line(s) after it were not read" if lost else ""
    return f"a quote opened on line {quote_line} is never closed{after}"


def _not_utf8(text: str, start: int, end: int, first: int) -> str | None:
    """Where the record ``text[start:end]`` (starting on line ``first``) is not UTF-8, if it is
    not: the first bad byte, counted within its line, as for JSONL."""
    bad = _BAD_BYTE.search(text, start, end)
    if bad is None:
        return None
    line_start = max(text.rfind("\n", start, bad.start()), text.rfind("\r", start, bad.start()))
    line_start = max(line_start + 1, start)
    byte = len(text[line_start : bad.start()].encode("utf-8", "surrogateescape")) + 1
    line = first + _count_lines(text, start, bad.start())
    where = f"byte {byte} of the line" if line == first else f"line {line}, byte {byte}"
    return f"not UTF-8 ({where})"


def to_items(rows: Rows, problems: list[FieldProblem], seen: dict[str, int]) -> list[Item]:
    """``rows`` as Items; a row with a bad or duplicate id becomes a problem in ``problems``.

    ``seen`` maps each id met so far to its line, so rows read in blocks share one duplicate
    check (pass the same dict for every block of a dataset).
    """
    items: list[Item] = []
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
