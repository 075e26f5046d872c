"""The durable list of a run's submitted batches, so a killed run re-attaches to them.

A JSON Lines file beside the output (``out.jsonl.batches.jsonl``), appended and fsynced
before the step it records is taken: ``uploaded`` (an input file and the ``custom_id`` of each
request in it) before the batch is created, ``submitted`` (the batch id) as soon as the
provider answers, ``closed`` once its results are read. A run started again on the same output
finds the batch that holds each of its requests here instead of submitting it again, so no
request is paid for twice; an ``uploaded`` file without its ``submitted`` line is looked up in
the provider's list of batches (the kill came between the two).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from refine.errors import ConfigError

__all__ = ["BatchJournal", "JournalBatch", "journal_path"]

logger = logging.getLogger(__name__)


def journal_path(output_path: Path) -> Path:
    """Where the journal of a run writing ``output_path`` lives."""
    return output_path.with_name(output_path.name + ".batches.jsonl")


@dataclass
class JournalBatch:
    """One input file and, once created, its batch; ``status`` is the last one read."""

    file_id: str
    endpoint: str
    step: int
    custom_ids: list[str]
    batch_id: str | None = None
    status: str | None = None
    closed: bool = False
    uploaded_at: float = field(default_factory=time.time)


class BatchJournal:
    """Reads the journal at ``path`` (if any) and appends to it, one fsync per line.

    Raises:
        ConfigError: the file cannot be read or written (naming it and the line).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: dict[str, JournalBatch] = {}  # by file id, in upload order
        self._by_batch: dict[str, JournalBatch] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_bytes().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: cannot read the batch journal ({exc.strerror})"
            ) from None
        for number, line in enumerate(lines, 1):
            try:
                self._apply(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                if number == len(lines):  # a line torn by a kill: nothing after it was written
                    logger.warning("%s, line %d: torn last line ignored", self.path, number)
                    continue
                raise ConfigError(
                    f"{self.path}, line {number}: not a batch journal entry ({exc}); "
                    "move the file away to start without it (its batches are then not re-attached)"
                ) from None

    def _apply(self, entry: dict[str, Any]) -> None:
        event = entry["event"]
        if event == "uploaded":
            batch = JournalBatch(
                file_id=entry["file_id"],
                endpoint=entry["endpoint"],
                step=int(entry["step"]),
                custom_ids=list(entry["custom_ids"]),
                uploaded_at=float(entry["at"]),
            )
            self.batches[batch.file_id] = batch
        elif event == "submitted":
            batch = self.batches[entry["file_id"]]
            batch.batch_id = entry["batch_id"]
            self._by_batch[batch.batch_id] = batch
        elif event == "closed":
            batch = self._by_batch[entry["batch_id"]]
            batch.closed, batch.status = True, entry["status"]
        else:
            raise KeyError(f"unknown event {event!r}")

    def _append(self, entry: dict[str, Any]) -> None:
        try:
            with self.path.open("ab") as file:
                file.write(orjson.dumps(entry) + b"\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: cannot write the batch journal ({exc.strerror})"
            ) from None
        self._apply(entry)

    def uploaded(
        self, file_id: str, endpoint: str, step: int, custom_ids: list[str], round_: int = 1
    ) -> None:
        """Record an input file before its batch is created (``round_``: the step's drafts are
        round 1, then its critiques, judges or repeats)."""
        self._append(
            {
                "event": "uploaded",
                "file_id": file_id,
                "endpoint": endpoint,
                "step": step,
                "round": round_,
                "custom_ids": custom_ids,
                "at": time.time(),
            }
        )

    def submitted(self, file_id: str, batch_id: str) -> None:
        """Record the batch created from ``file_id``."""
        self._append({"event": "submitted", "file_id": file_id, "batch_id": batch_id})

    def closed(self, batch_id: str, status: str) -> None:
        """Record that a batch ended (``completed``, ``expired``, ``cancelled``, ``failed``)
        and its results were read."""
        self._append({"event": "closed", "batch_id": batch_id, "status": status})

    def latest_holding(self, endpoint: str) -> dict[str, JournalBatch]:
        """For each ``custom_id`` ever submitted to ``endpoint``, the latest batch holding it."""
        found: dict[str, JournalBatch] = {}
        for batch in self.batches.values():
            if batch.endpoint == endpoint:
                for custom_id in batch.custom_ids:
                    found[custom_id] = batch
        return found
