"""Reading a run's output file back as :class:`~flows.records.Trajectory` records, for the
commands that work on finished (or running) runs: ``refine eval`` and ``refine export``.

The file may belong to a run that is still writing: a last line without its newline is a
writer mid-line and is left out. Any other line that is not a record is an error naming the
file and line, so a damaged output is never evaluated or exported as if it were whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from flows.records import Trajectory
from refine.errors import FieldProblem, InputError

__all__ = ["OUTPUT_HINT", "iter_trajectories"]


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
