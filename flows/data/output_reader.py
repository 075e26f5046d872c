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
3. **Ids.** An id counts once: its first record wins, and a later record of the same id is left
   out and counted in ``repeated``. A resumed run never writes one; a hand-merged file might.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.data.records import Trajectory
from refine.errors import FieldProblem, InputError

__all__ = ["OUTPUT_HINT", "OutputScan", "RecordReader", "parse_record"]

OUTPUT_HINT = "is this the --output file of `refine run`?"


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """The record on a complete line as raw JSON, or None for a foreign line (rule 2)."""
    try:
        value = json.loads(raw)
    except ValueError:  # not JSON, empty, or not UTF-8
        return None
    if (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("status"), str)
    ):
        return value
    return None


class OutputScan:
    """A pass over an output file that can go on where it stopped: a later :meth:`lines` or
    :meth:`records` call reads only what was appended since, so a watcher keeps one scan.

    Attributes:
        path: the output file.
        offset: where the last complete line read ends (bytes); a writer appends after it.
        line: the number of that line, counted from where the scan started (1-based).
        torn_bytes: the length of the torn tail the latest pass stopped at; 0 when none.
        foreign: the numbers of the foreign lines :meth:`records` skipped.
        repeated: how many later records of an id seen before were left out.
        ids: the ids counted so far.

    Raises (from :meth:`lines` and :meth:`records`):
        OSError: the file cannot be opened (FileNotFoundError when it does not exist); each
            reader decides what a missing file means to it.
    """

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.line = 0
        self.torn_bytes = 0
        self.foreign: list[int] = []
        self.repeated = 0
        self.ids: set[str] = set()

    @property
    def torn_tail(self) -> bool:
        """Whether the latest pass stopped at a torn tail (rule 1)."""
        return self.torn_bytes > 0

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

    def first(self, record_id: str) -> bool:
        """Whether this is the first record of ``record_id`` (rule 3); a later one is counted
        in ``repeated``."""
        if record_id in self.ids:
            self.repeated += 1
            return False
        self.ids.add(record_id)
        return True

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(line number, raw record)`` for the first record of each id after ``offset``,
        skipping foreign lines and noting them in ``foreign`` (all three rules)."""
        for number, raw in self.lines():
            record = parse_record(raw)
            if record is None:
                self.foreign.append(number)
            elif self.first(record["id"]):
                yield number, record


class RecordReader:
    """The records of a run's output file as Trajectory objects with their line numbers, in
    file order, each id once: what ``refine eval``, ``refine export`` and the shard merge read.

    The three rules of this module apply: a torn tail is left out and ``torn_tail`` says so; a
    later record of an id seen before is left out and counted in ``repeated``; a foreign line,
    or a record that is not a whole Trajectory, stops the reading.

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
    def repeated(self) -> int:
        """How many later records of an id seen before were left out so far."""
        return self._scan.repeated

    def __iter__(self) -> Iterator[tuple[int, Trajectory]]:
        self._scan = scan = OutputScan(self.path)
        try:
            for number, raw in scan.lines():
                try:
                    record = Trajectory.model_validate_json(raw)
                except ValidationError as exc:
                    problem = _problem(number, raw, exc)
                    raise InputError(self.path, [problem], hint=OUTPUT_HINT) from None
                if scan.first(record.id):
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
