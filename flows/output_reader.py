"""Reading a run's output file back as :class:`~flows.records.Trajectory` records, for the
commands that work on finished (or running) runs: ``refine eval`` and ``refine export``.

The file may belong to a run that is still writing: a last line without its newline is a
writer mid-line and is left out. Any other line that is not a record is an error naming the
file and line, so a damaged output is never evaluated or exported as if it were whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from flows.records import Trajectory
from refine.errors import FieldProblem, InputError

__all__ = ["OUTPUT_HINT", "RecordReader", "iter_trajectories"]


def iter_trajectories(path: Path) -> Iterator[tuple[int, Trajectory]]:
    """Yield ``(line number, record)`` for every complete line of ``path``.

    Raises:
        InputError: the file is missing, or a complete line is not a Trajectory record.
    """
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputError(path, [FieldProblem(0, None, "file not found")]) from None
    except OSError as exc:
        raise InputError(path, [FieldProblem(0, None, f"cannot read: {exc.strerror}")]) from None
    with fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return  # a torn tail: the run is mid-line
            if not raw.strip():
                continue
            try:
                yield number, Trajectory.model_validate_json(raw)
            except ValidationError as exc:
                raise InputError(path, [_problem(number, exc)], hint=OUTPUT_HINT) from None


OUTPUT_HINT = "is this the --output file of `refine run`?"


def _problem(line: int, exc: ValidationError) -> FieldProblem:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return FieldProblem(line, None, "not valid JSON")
    where = ".".join(str(part) for part in first["loc"]) or None
    return FieldProblem(line, where, first["msg"])


class RecordReader:
    """The records of a run's output file with their line numbers, in file order, each id once:
    what ``refine eval`` and ``refine export`` read.

    A last line without its newline is a run still writing (or killed mid-line): it is left out
    and ``torn_tail`` says so. A later record of an id seen before is left out too, as
    ``refine eval`` leaves it (a resumed run never writes one; a hand-merged file might), and
    counted in ``repeated``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_tail = False
        self.repeated = 0

    def __iter__(self) -> Iterator[tuple[int, Trajectory]]:
        seen: set[str] = set()
        for number, record in iter_trajectories(self.path):
            if record.id in seen:
                self.repeated += 1
                continue
            seen.add(record.id)
            yield number, record
        self.torn_tail = _ends_mid_line(self.path)


def _ends_mid_line(path: Path) -> bool:
    """Whether the file's last byte is not a newline: the reader left a torn line out."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return False
        fh.seek(size - 1)
        return fh.read(1) != b"\n"
