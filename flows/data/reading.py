"""A dataset's records as the run sees them: the chosen rows (``--limit``, ``--sample``), their
columns renamed to template variables (``--map``), as :class:`Item` blocks.

The order of work is fixed: choose the records, then map their columns, then read ids. So
``--limit 10`` takes the first 10 records of the file whether or not they are good, and a
mapping problem is the problem of its record's line.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterator
from itertools import islice
from pathlib import Path
from typing import NoReturn

from flows.data.dataset import to_items
from flows.data.hf_datasets import HubDatasetSource, SavedDatasetSource
from flows.data.input_config import InputConfig
from flows.data.records import Item
from flows.data.sources import BATCH_ROWS, DataSource, ParquetSource, Record, TextFileSource
from refine.errors import FieldProblem, InputError

__all__ = [
    "ItemStream",
    "chosen_records",
    "is_hub_name",
    "item_blocks",
    "iter_items",
    "mapped_records",
    "open_source",
]


def chosen_records(source: DataSource, config: InputConfig) -> Iterator[Record]:
    """The records ``config`` chooses: all, the first ``limit``, or ``sample`` drawn at random.

    The sample is ``random.Random(seed).sample`` over the record positions (0-based, in file
    order), kept in file order: the same seed over the same dataset picks the same rows. A
    dataset that does not know its size (a streamed Hub dataset) is counted with a first pass.
    """
    wanted: set[int] | None = None
    if config.sample is not None:
        total = source.count()
        if total is None:
            total = sum(not record.whole_file for record in source.records())
        wanted = set(random.Random(config.seed).sample(range(total), min(config.sample, total)))
    position = 0
    for record in source.records():
        if record.whole_file:
            yield record
            continue
        if config.limit is not None and position >= config.limit:
            return
        if wanted is None or position in wanted:
            yield record
        position += 1


def _check_mapped_columns(source: DataSource, mapping: dict[str, str]) -> None:
    """Refuse, before reading a row, a mapping to a column the dataset's schema lacks."""
    columns = source.columns()
    if columns is None or not mapping:
        return
    problems = [
        FieldProblem(
            0,
            variable,
            f"no column {column!r} in the dataset (--map {variable}={column}); "
            f"its columns: {', '.join(columns)}",
        )
        for variable, column in mapping.items()
        if column not in columns
    ]
    if problems:
        raise InputError(source.path, problems)


def mapped_records(records: Iterator[Record], mapping: dict[str, str]) -> Iterator[Record]:
    """``records`` with each mapped column renamed to its variable (the column's own name
    goes); a row without a mapped column gets a problem on its line naming both."""
    if not mapping:
        yield from records
        return
    sources = set(mapping.values())
    for record in records:
        if record.row is None:
            yield record
            continue
        row = {name: value for name, value in record.row.items() if name not in sources}
        problems = []
        for variable, column in mapping.items():
            if column in record.row:
                row[variable] = record.row[column]
            else:
                problems.append(
                    FieldProblem(
                        record.line,
                        variable,
                        f"the row has no column {column!r} (--map {variable}={column})",
                    )
                )
        yield Record(record.line, None, tuple(problems)) if problems else Record(record.line, row)


def item_blocks(
    source: DataSource, config: InputConfig, size: int = BATCH_ROWS
) -> Iterator[tuple[list[Item], list[FieldProblem]]]:
    """The chosen, mapped records as Items, ``size`` records at a time, with the problems of
    that block's records (bad lines, bad or duplicate ids, unmapped columns).

    Raises:
        InputError: what makes the whole dataset unreadable, a mapped column the schema lacks.
    """
    _check_mapped_columns(source, config.map)
    seen: dict[str, int] = {}  # one duplicate-id check across blocks
    records = mapped_records(chosen_records(source, config), config.map)
    while block := list(islice(records, size)):
        problems = [problem for record in block for problem in record.problems]
        rows = [(record.line, record.row) for record in block if record.row is not None]
        yield to_items(rows, problems, seen), problems


def iter_items(source: DataSource, config: InputConfig) -> Iterator[Item]:
    """The good Items of the chosen, mapped records, in order (bad records left out)."""
    for items, _ in item_blocks(source, config):
        yield from items


class ItemStream(Collection[Item]):
    """The good Items of a dataset read again on each iteration: a run over a dataset too big
    to hold holds one block of it at a time.

    ``bad_lines`` are the lines the pre-flight check left out; ``count`` is how many Items an
    iteration yields (the pre-flight check counted them).
    """

    def __init__(
        self, source: DataSource, config: InputConfig, bad_lines: frozenset[int], count: int
    ) -> None:
        self._source = source
        self._config = config
        self._bad = bad_lines
        self._count = count

    def __iter__(self) -> Iterator[Item]:
        return (
            item for item in iter_items(self._source, self._config) if item.line not in self._bad
        )

    def __len__(self) -> int:
        return self._count

    def __contains__(self, value: object) -> bool:
        return any(item == value for item in self)


_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SAVED_MARKS = ("dataset_info.json", "state.json", "dataset_dict.json")


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
            a missing optional library (saying which extra to install), a split or subset
            asked of a source that has none (its rows would not be the ones asked for).
    """
    hub = is_hub_name(path)
    saved = path.is_dir()
    if config.subset is not None and not hub:
        _refuse(path, f"--subset {config.subset} applies to a Hub dataset's configurations")
    if config.split is not None and not (hub or saved):
        _refuse(path, f"--split {config.split} applies to Hugging Face datasets, not files")
    if saved:
        if not any((path / mark).exists() for mark in _SAVED_MARKS):
            _refuse(
                path, "a folder, but not a dataset saved by Hugging Face datasets' save_to_disk"
            )
        return SavedDatasetSource(path, config.split)
    if path.suffix.lower() in {".parquet", ".pq"}:
        return ParquetSource(path)
    if hub:
        return HubDatasetSource(str(path), config.subset, config.split)
    return TextFileSource(path)  # it says "file not found" or "unknown format"


def _refuse(path: Path, problem: str) -> NoReturn:
    raise InputError(path, [FieldProblem(0, None, problem)])
