"""The append-only output: one JSON line per finished item, flushed as it finishes.

Opening an existing file resumes it: a torn last line (a kill mid-write) is cut off, the ids
already written are returned so the run skips them, and no id is ever written twice. An
exclusive lock stops two runs from appending to the same file.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType

from flows.records import Trajectory
from refine.errors import ConfigError, FieldProblem, InputError

__all__ = ["OutputLog"]


class OutputLog:
    """An output JSONL opened for appending; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.finished: set[str] = set()
        self.failed: set[str] = set()
        self.repaired_bytes = 0
        self.complete_bytes = 0  # where the last whole record ends, after repair

    def __enter__(self) -> OutputLog:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: cannot write the output here ({exc.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{self.path}: another run is writing to this output") from None
        self._fd = fd
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recover(self) -> None:
        """Read the ids already written, line by line; cut a torn last line off."""
        problems = []
        complete = 0
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    break  # a torn last line: a kill mid-write
                complete += len(raw)
                try:
                    record = json.loads(raw)
                    record_id, status = str(record["id"]), record["status"]
                except (ValueError, KeyError, TypeError):
                    problems.append(FieldProblem(number, None, "not a record written by refine"))
                    continue
                self.finished.add(record_id)
                if status == "failed":
                    self.failed.add(record_id)
            end = fh.tell()
        if problems:  # not our file, or damaged: refuse it without touching it
            raise InputError(self.path, problems, hint="choose another --output or repair it")
        if complete < end:
            os.truncate(self.path, complete)  # a torn last line is never read as a record
            self.repaired_bytes = end - complete
        self.complete_bytes = complete

    def append(self, trajectory: Trajectory) -> bool:
        """Write one record as a single line; False (and nothing written) if its id is done."""
        if self._fd is None:
            raise RuntimeError("OutputLog is not open")
        if trajectory.id in self.finished:
            return False
        line = (trajectory.model_dump_json() + "\n").encode()
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        self.finished.add(trajectory.id)
        return True

    def close(self) -> None:
        """Release the lock and the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
