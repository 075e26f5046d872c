"""Where a dataset's rows come from: the records of a source, and the file sources (JSONL, CSV,
Parquet); the Hugging Face ones are in :mod:`flows.data.hf_datasets`, and
:func:`flows.data.reading.open_source` picks one for a path.

Each source yields its records in order as ``(line, row)``. For JSONL and CSV the line is the
file's line; for Parquet and Hugging Face datasets it is the row's number, counted from 1, so
every message names a row the same way. Parquet and saved datasets are read a record batch
at a time (``pyarrow.parquet.ParquetFile.iter_batches``; ``datasets`` memory-maps its Arrow
files), so reading never holds more than one batch of rows; a Hub dataset is streamed
(``load_dataset(..., streaming=True)``). JSONL and CSV files are read whole, as before.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.data.dataset import parse_text_file
from refine.errors import FieldProblem, InputError

__all__ = [
    "BATCH_ROWS",
    "DataSource",
    "ParquetSource",
    "Record",
    "TextFileSource",
    "plain_record",
]

BATCH_ROWS = 1024
"""Rows per record batch read from Parquet or a Hugging Face dataset."""

PARQUET_HINT = "install pyarrow: pip install 'prefect-refine[parquet]'"


@dataclass(frozen=True)
class Record:
    """One record of a dataset: its line (or row number), and its row or why it has none."""

    line: int
    row: dict[str, Any] | None
    problems: tuple[FieldProblem, ...] = ()

    @property
    def whole_file(self) -> bool:
        """Line 0: problems of the whole file, not a record (never counted, never chosen)."""
        return self.line == 0


class DataSource(ABC):
    """A dataset's records, readable more than once (the pre-flight check, then the run)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def path(self) -> Path:
        """What error messages name: the file, folder or Hub name."""
        return Path(self.name)

    def columns(self) -> list[str] | None:
        """The dataset's column names when known before reading a row (Parquet, datasets)."""
        return None

    def count(self) -> int | None:
        """How many records the dataset holds, when known without reading them."""
        return None

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Every record, in order. Raises InputError for what makes the whole dataset unreadable."""


class TextFileSource(DataSource):
    """A JSONL or CSV file (read whole: see :mod:`flows.data.dataset`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self._file = path
        self._parsed: tuple[list[Record], list[FieldProblem]] | None = None

    def _parse(self) -> tuple[list[Record], list[FieldProblem]]:
        rows, problems = parse_text_file(self._file)
        by_line: dict[int, list[FieldProblem]] = {}
        whole = [p for p in problems if p.line == 0]
        for problem in problems:
            if problem.line:
                by_line.setdefault(problem.line, []).append(problem)
        records = [Record(line, row) for line, row in rows]
        records += [Record(line, None, tuple(found)) for line, found in by_line.items()]
        records.sort(key=lambda record: record.line)
        return records, whole

    def columns(self) -> list[str] | None:
        if self._file.suffix.lower() != ".csv":
            return None
        records, _ = self._cached()
        first = next((r.row for r in records if r.row is not None), None)
        return list(first) if first is not None else None

    def _cached(self) -> tuple[list[Record], list[FieldProblem]]:
        if self._parsed is None:
            self._parsed = self._parse()
        return self._parsed

    def count(self) -> int | None:
        return len(self._cached()[0])

    def records(self) -> Iterator[Record]:
        records, whole = self._cached()
        if whole:  # the whole file's problems (a header naming a column twice) come first
            yield Record(0, None, tuple(whole))
        yield from records


class ParquetSource(DataSource):
    """A Parquet file, read a record batch at a time."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(
                path, [FieldProblem(0, None, f"Parquet needs pyarrow: {PARQUET_HINT}")]
            ) from None
        try:
            self._file = pq.ParquetFile(path)
        except FileNotFoundError:
            raise InputError(path, [FieldProblem(0, None, "file not found")]) from None
        except Exception as exc:  # pyarrow's ArrowInvalid, OSError: a damaged or foreign file
            raise InputError(
                path, [FieldProblem(0, None, f"not a readable Parquet file: {exc}")]
            ) from None

    def columns(self) -> list[str] | None:
        return list(self._file.schema_arrow.names)

    def count(self) -> int | None:
        return int(self._file.metadata.num_rows)

    def records(self) -> Iterator[Record]:
        line = 0
        for batch in self._file.iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                line += 1
                yield plain_record(line, row)


class _NotText(ValueError):
    """Bytes that are not UTF-8: a prompt cannot show them."""


def _plain(value: Any) -> Any:
    """A value as a template prints it: dates and decimals as text, bytes decoded as UTF-8
    (raising :class:`_NotText` where they are not), containers walked."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotText(f"bytes that are not UTF-8 text (byte {exc.start + 1})") from None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def plain_record(line: int, row: dict[str, Any]) -> Record:
    """The record of a row read from Arrow data (Parquet, a Hugging Face dataset): its values
    as :func:`_plain` makes them, or a problem per column whose bytes are not UTF-8."""
    plain: dict[str, Any] = {}
    problems = []
    for name, value in row.items():
        try:
            plain[name] = _plain(value)
        except _NotText as exc:
            problems.append(FieldProblem(line, name, str(exc)))
    return Record(line, None, tuple(problems)) if problems else Record(line, plain)
