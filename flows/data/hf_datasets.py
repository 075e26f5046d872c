"""Hugging Face datasets as sources: a dataset saved with ``save_to_disk`` (read through its
memory-mapped Arrow files) and a dataset on the Hub (``load_dataset(..., streaming=True)``).
Both need the ``datasets`` library, the ``[datasets]`` extra; without it, the error says so.
"""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.data.sources import BATCH_ROWS, DataSource, Record, plain_record
from refine.errors import FieldProblem, InputError

__all__ = ["HubDatasetSource", "SavedDatasetSource"]

HUB_TIMEOUT_S = 10.0
"""Seconds the one question to the Hugging Face Hub may take before it counts as unreachable."""

DATASETS_HINT = "install the datasets extra: pip install 'prefect-refine[datasets]'"


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
        yield from _numbered(itertools.chain([first], batches))


def _numbered(batches: Iterator[dict[str, list[Any]]]) -> Iterator[Record]:
    """Column batches (``{column: values}``) as numbered records."""
    line = 0
    for batch in batches:
        names = list(batch)
        for values in zip(*(batch[name] for name in names), strict=True):
            line += 1
            yield plain_record(line, dict(zip(names, values, strict=True)))


def _one_split(path: Path, loaded: Any, split: str | None) -> Any:
    """The split to read of a ``DatasetDict`` (its only one, or ``split``); a Dataset as it is."""
    if not isinstance(loaded, dict):  # DatasetDict and IterableDatasetDict are dicts
        if split is not None:  # the rows would not be the split asked for
            problem = (
                f"one dataset without splits, so --split {split} cannot choose among them "
                "(it applies to a dataset saved with several: a DatasetDict)"
            )
            raise InputError(path, [FieldProblem(0, None, problem)])
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
