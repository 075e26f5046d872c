"""The one reader of a run's output file. Every reader of one goes through it: the resuming
writer (:mod:`flows.data.output`), the run's figures (:mod:`flows.ui.run_stats`), live progress
(:mod:`flows.ui.progress`), ``refine eval`` and ``refine export`` (:class:`RecordReader`), and the
merge of shard parts (:mod:`flows.sharding`). It reads one line at a time, and owns three rules:

1. **Lines.** A line ends with a newline. A last line without one is the *torn tail*: a writer
   mid-line, or one killed mid-write. It is never a record, and no reader reads it as one: the
   resuming writer cuts it off, ``eval`` and ``export`` leave it out and say so, the progress
   watcher waits for its newline.
2. **Records.** A complete line is a *record* when it is a JSON object with a string ``id`` and a
   string ``status`` (every :class:`~flows.data.records.Trajectory` is one, and so is a record of an
   older version). Any other line (empty, not JSON, another JSON value, an object without them) is a
   *foreign line*. A reader whose result is data (resume, eval, export, merge) refuses the file at a
   foreign line, naming the file and the line; a reader that only shows figures (run stats,
   progress) skips it and counts it in ``foreign``. Eval, export and merge need whole Trajectory
   records, and refuse a record they cannot read as one in the same way.
3. **Ids: the latest record of an id wins.** An id counts once, as its latest (last complete)
   record says; an earlier record of the same id is *superseded*: left out of every figure and
   every export, and counted in ``superseded``. ``refine run --retry-failed`` writes one on
   purpose: the item's new record, appended after its ``failed`` one. The rule does not look at
   the status: in a file no run wrote that way (an ``ok`` after an ``ok``, hand-merged), the
   latest record wins too, so one rule answers every case. :meth:`OutputScan.keep` applies it,
   and every reader goes through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.data.records import Trajectory
from refine.errors import FieldProblem, InputError
from refine.jsonl import JSON_FAILURES

__all__ = ["OUTPUT_HINT", "Latest", "OutputScan", "RecordReader", "parse_record"]

OUTPUT_HINT = "is this the --output file of `refine run`?"


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """The record on a complete line as raw JSON, or None for a foreign line (rule 2)."""
    try:
        value = json.loads(raw)
    except JSON_FAILURES:  # not JSON, empty, not UTF-8, or nested deeper than the stack
        return None
    if (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("status"), str)
    ):
        return value
    return None


@dataclass(frozen=True)
class Latest:
    """An id's latest record so far: its line number and its status."""

    line: int
    status: str


class OutputScan:
    """A pass over an output file that can go on where it stopped: a later :meth:`lines` or
    :meth:`records` call reads only what was appended since, so a watcher keeps one scan.

    Attributes:
        path: the output file.
        start: where the scan started (bytes); line numbers count from there.
        offset: where the last complete line read ends (bytes); a writer appends after it.
        line: the number of that line, counted from where the scan started (1-based).
        torn_bytes: the length of the torn tail the latest pass stopped at; 0 when none.
        foreign: the numbers of the foreign lines :meth:`records` skipped.
        latest: each id seen so far and its latest record (rule 3).
        superseded: how many records were superseded by a later record of the same id.

    Raises (from :meth:`lines` and :meth:`records`):
        OSError: the file cannot be opened (FileNotFoundError when it does not exist); each
            reader decides what a missing file means to it.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.start = offset
        self.offset = offset
        self.line = 0
        self.torn_bytes = 0
        self.foreign: list[int] = []
        self.latest: dict[str, Latest] = {}
        self.superseded = 0

    @property
    def torn_tail(self) -> bool:
        """Whether the latest pass stopped at a torn tail (rule 1)."""
        return self.torn_bytes > 0

    @property
    def ids(self) -> set[str]:
        """The ids counted so far, each once."""
        return set(self.latest)

    def failed_ids(self) -> set[str]:
        """The ids whose latest record so far is ``failed``."""
        return {item_id for item_id, seen in self.latest.items() if seen.status == "failed"}

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """Yield ``(line number, raw line)`` for each complete line after ``offset`` (rule 1),
        moving ``offset`` and ``line`` past each one as it is yielded."""
        self.torn_bytes = 0
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    self.torn_bytes = len(raw)
                    return
                self.offset += len(raw)
                self.line += 1
                yield self.line, raw

    def keep(self, record_id: str, line: int, status: str) -> Latest | None:
        """Rule 3, the one place it is applied: the record on ``line`` is now the latest of
        ``record_id``. Returns the record it supersedes (counted in ``superseded``), or None
        for the id's first record."""
        before = self.latest.get(record_id)
        self.latest[record_id] = Latest(line, status)
        self.superseded += before is not None
        return before

    def records(self) -> Iterator[tuple[int, dict[str, Any], Latest | None]]:
        """Yield ``(line number, raw record, the record it supersedes or None)`` for every
        record after ``offset`` in file order, skipping foreign lines and noting them in
        ``foreign``. A reader that follows a growing file (progress) uses the third value to
        undo what the superseded record counted; :meth:`latest_records` is for whole files."""
        for number, raw in self.lines():
            record = parse_record(raw)
            if record is None:
                self.foreign.append(number)
            else:
                yield number, record, self.keep(record["id"], number, record["status"])

    def settle(self) -> None:
        """Read every record to the end of the file, so ``latest`` holds each id's last one."""
        for _ in self.records():
            pass

    def is_latest(self, line: int, record_id: str) -> bool:
        """Whether the record on ``line`` is its id's latest (after :meth:`settle`)."""
        seen = self.latest.get(record_id)
        return seen is not None and seen.line == line

    def reread(self) -> Iterator[tuple[int, bytes]]:
        """The complete lines a settled scan read, again, from ``start`` to ``offset``: the
        second pass of a whole-file reader (a line appended meanwhile is not read)."""
        with self.path.open("rb") as fh:
            fh.seek(self.start)
            for number in range(1, self.line + 1):
                yield number, fh.readline()

    def latest_records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(line number, raw record)`` for the latest record of each id, in file order
        (all three rules): two passes, so memory holds ids, never records."""
        self.settle()
        for number, raw in self.reread():
            record = parse_record(raw)
            if record is not None and self.is_latest(number, record["id"]):
                yield number, record


class RecordReader:
    """The records of a run's output file as Trajectory objects with their line numbers, in
    file order, each id once (its latest record): what ``refine eval``, ``refine export`` and
    the shard merge read.

    The three rules of this module apply: a torn tail is left out and ``torn_tail`` says so; a
    record superseded by a later one of its id is left out and counted in ``superseded``; a
    foreign line, or a record that is not a whole Trajectory, stops the reading.

    Raises (while iterating):
        InputError: the file is missing or unreadable, or a complete line is not a Trajectory
            record (naming the file, the line and what is wrong).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._scan = OutputScan(path)

    @property
    def torn_tail(self) -> bool:
        """Whether the reading stopped at a torn tail (known once it has ended)."""
        return self._scan.torn_tail

    @property
    def superseded(self) -> int:
        """How many records a later record of the same id superseded (known once the reading
        has started)."""
        return self._scan.superseded

    def __iter__(self) -> Iterator[tuple[int, Trajectory]]:
        self._scan = scan = OutputScan(self.path)
        try:
            scan.settle()
            for number, raw in scan.reread():
                try:
                    record = Trajectory.model_validate_json(raw)
                except ValidationError as exc:
                    problem = _problem(number, raw, exc)
                    raise InputError(self.path, [problem], hint=OUTPUT_HINT) from None
                if scan.is_latest(number, record.id):
                    yield number, record
        except FileNotFoundError:
            raise InputError(self.path, [FieldProblem(0, None, "file not found")]) from None
        except OSError as exc:
            problem = FieldProblem(0, None, f"cannot read: {exc.strerror}")
            raise InputError(self.path, [problem]) from None


def _problem(line: int, raw: bytes, exc: ValidationError) -> FieldProblem:
    """What is wrong with a line that is not a Trajectory record, in one short phrase."""
    if not raw.strip():
        return FieldProblem(line, None, "an empty line, not a record")
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return FieldProblem(line, None, "not valid JSON")
    where = ".".join(str(part) for part in first["loc"]) or None
    return FieldProblem(line, where, first["msg"])
