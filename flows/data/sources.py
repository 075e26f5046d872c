"""Where a dataset's rows come from: JSONL, CSV, Parquet, a Hugging Face dataset saved to disk,
or one on the Hugging Face Hub.

Each source yields its records in order as ``(line, row)``. For JSONL and CSV the line is the
file's line; for Parquet and Hugging Face datasets it is the row's number, counted from 1, so
every message names a row the same way. Parquet and saved datasets are read a record batch
at a time (``pyarrow.parquet.ParquetFile.iter_batches``; ``datasets`` memory-maps its Arrow
files), so reading never holds more than one batch of rows; a Hub dataset is streamed
(``load_dataset(..., streaming=True)``). JSONL and CSV files are read whole, as before.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.data.dataset import parse_text_file
from flows.data.input_config import InputConfig
from refine.errors import FieldProblem, InputError

__all__ = ["DataSource", "Record", "is_hub_name", "open_source"]

BATCH_ROWS = 1024
"""Rows per record batch read from Parquet or a Hugging Face dataset."""

HUB_TIMEOUT_S = 10.0
"""Seconds the one question to the Hugging Face Hub may take before it counts as unreachable."""

DATASETS_HINT = "install the datasets extra: pip install 'prefect-refine[datasets]'"
PARQUET_HINT = "install pyarrow: pip install 'prefect-refine[parquet]'"

_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SAVED_MARKS = ("dataset_info.json", "state.json", "dataset_dict.json")


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
                yield Record(line, _plain_row(row))


class SavedDatasetSource(DataSource):
    """A Hugging Face dataset saved with ``save_to_disk`` (memory-mapped Arrow files)."""

    def __init__(self, path: Path, split: str | None) -> None:
        super().__init__(str(path))
        datasets = _import_datasets(path)
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:  # FileNotFoundError, a damaged folder
            raise InputError(
                path, [FieldProblem(0, None, f"cannot load the saved dataset: {exc}")]
            ) from None
        self._data = _one_split(path, loaded, split)

    def columns(self) -> list[str] | None:
        return list(self._data.column_names)

    def count(self) -> int | None:
        return len(self._data)

    def records(self) -> Iterator[Record]:
        yield from _numbered(self._data.iter(batch_size=BATCH_ROWS))


class HubDatasetSource(DataSource):
    """A dataset on the Hugging Face Hub, streamed (``load_dataset(..., streaming=True)``)."""

    def __init__(self, name: str, subset: str | None, split: str | None) -> None:
        super().__init__(name)
        self._subset = subset
        self._split = split
        self._datasets = _import_datasets(Path(name))

    def _load_call(self) -> str:
        """The ``load_dataset`` call that loads what this source names, as Python."""
        subset = f", {self._subset!r}" if self._subset else ""
        split = repr(self._split) if self._split else "..."
        return f"load_dataset({self.name!r}{subset}, split={split})"

    def _probe(self) -> None:
        """Ask the Hub about the dataset once, with a short timeout, before ``datasets`` does:
        its own client retries an unreachable Hub for about half a minute, logging each try.
        Skipped in offline mode (``HF_HUB_OFFLINE=1``: ``datasets`` reads its local cache)."""
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return
        url = f"{constants.ENDPOINT}/api/datasets/{self.name}"
        try:
            with urllib.request.urlopen(url, timeout=HUB_TIMEOUT_S):
                return
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404):
                problem = (
                    f"not a file or folder here, and the Hugging Face Hub ({constants.ENDPOINT}) "
                    f"has no dataset {self.name!r} this machine may read (HTTP {exc.code}; a "
                    "gated or private one needs HF_TOKEN)"
                )
                raise InputError(self.path, [FieldProblem(0, None, problem)]) from None
            return  # another answer: the Hub is there; datasets says what is wrong
        except (OSError, ValueError) as exc:  # no network, DNS, refused, timed out
            raise self._unreachable(exc, constants.ENDPOINT) from None

    def _unreachable(self, exc: Exception, endpoint: str = "") -> InputError:
        reason = getattr(exc, "reason", None) or exc
        where = f" ({endpoint})" if endpoint else ""
        return InputError(
            self.path,
            [
                FieldProblem(
                    0,
                    None,
                    "not a file or folder here, and the Hugging Face Hub"
                    f"{where} cannot be reached to load it as a Hub dataset: "
                    f"{str(reason)[:300]}",
                )
            ],
            hint="Where the Hub is reachable, save it once with datasets' "
            f"{self._load_call()}.save_to_disk(FOLDER) and pass FOLDER; "
            "or export it to Parquet or JSONL.",
        )

    def records(self) -> Iterator[Record]:
        self._probe()
        try:
            loaded = self._datasets.load_dataset(
                self.name, self._subset, split=self._split, streaming=True
            )
            data = _one_split(self.path, loaded, self._split)
            batches = iter(data.iter(batch_size=BATCH_ROWS))
            first = next(batches, None)
        except InputError:
            raise
        except Exception as exc:  # no network, no such dataset, a gated one: said as it is
            raise self._unreachable(exc) from None
        if first is None:
            return
        yield from _numbered(_chain(first, batches))


def _chain(
    first: dict[str, list[Any]], rest: Iterator[dict[str, list[Any]]]
) -> Iterator[dict[str, list[Any]]]:
    yield first
    yield from rest


def _numbered(batches: Iterator[dict[str, list[Any]]]) -> Iterator[Record]:
    """Column batches (``{column: values}``) as numbered records."""
    line = 0
    for batch in batches:
        names = list(batch)
        for values in zip(*(batch[name] for name in names), strict=True):
            line += 1
            yield Record(line, _plain_row(dict(zip(names, values, strict=True))))


def _one_split(path: Path, loaded: Any, split: str | None) -> Any:
    """The split to read of a ``DatasetDict`` (its only one, or ``split``); a Dataset as it is."""
    if not isinstance(loaded, dict):  # DatasetDict and IterableDatasetDict are dicts
        return loaded
    names = list(loaded.keys())
    if split is None and len(names) == 1:
        return loaded[names[0]]
    if split is None or split not in names:
        said = "" if split is None else f"no split {split!r}; "
        raise InputError(
            path,
            [FieldProblem(0, None, f"{said}choose a split with --split: {', '.join(names)}")],
        )
    return loaded[split]


def _import_datasets(path: Path) -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError(
            path,
            [
                FieldProblem(
                    0, None, f"Hugging Face datasets need the datasets library: {DATASETS_HINT}"
                )
            ],
        ) from None
    return datasets


def _plain(value: Any) -> Any:
    """A value as a template prints it: dates and decimals as text, containers walked."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in row.items()}


def is_hub_name(path: Path) -> bool:
    """Whether ``path`` names no file or folder here and reads as a Hub dataset ``owner/name``."""
    text = str(path)
    return (
        not path.exists()
        and _HUB_NAME.fullmatch(text) is not None
        and path.suffix.lower() not in {".jsonl", ".ndjson", ".csv", ".parquet", ".pq"}
    )


def open_source(path: Path, config: InputConfig) -> DataSource:
    """The source of ``path``: by its suffix, a saved-dataset folder, or a Hub name.

    Raises:
        InputError: a missing file, an unknown format, a folder that is not a saved dataset,
            a missing optional library (saying which extra to install).
    """
    if path.is_dir():
        if not any((path / mark).exists() for mark in _SAVED_MARKS):
            problem = "a folder, but not a dataset saved by Hugging Face datasets' save_to_disk"
            raise InputError(path, [FieldProblem(0, None, problem)])
        return SavedDatasetSource(path, config.split)
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return ParquetSource(path)
    if is_hub_name(path):
        return HubDatasetSource(str(path), config.subset, config.split)
    return TextFileSource(path)  # it says "file not found" or "unknown format"
