"""The append-only output: one JSON line per finished item, flushed as it finishes.

Opening an existing file resumes it, reading it by the rules of :mod:`flows.data.output_reader`:
a torn last line (a kill mid-write) is cut off, a foreign line refuses the file, and the ids
already written are returned so the run skips them; an id's latest record says how it ended.
With ``retry_failed`` the ids whose latest record is ``failed`` are not finished: the run takes
them up again and appends each one's new record after the old one, which it supersedes (the
file is never rewritten). Within one opening no id is ever written twice. An exclusive lock
stops two runs from appending to the same file. The one scan on opening also tells where the
last whole line ends and how many ids there are, for a progress follower.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from flows.data.output_reader import OutputScan
from flows.data.records import Trajectory
from refine.errors import ConfigError, FieldProblem, InputError

__all__ = ["OutputLog"]


class OutputLog:
    """An output JSONL opened for appending; use as a context manager.

    Args:
        path: the output file (created with its folder when missing).
        retry_failed: take up the ids whose latest record is ``failed`` again: they are left
            out of ``finished`` (and listed in ``retrying``), so one new record each may be
            appended.
    """

    def __init__(self, path: Path, *, retry_failed: bool = False) -> None:
        self.path = path
        self.retry_failed = retry_failed
        self._fd: int | None = None
        self.finished: set[str] = set()  # ids not to run again: append refuses them
        self.failed: set[str] = set()  # ids whose latest record is failed, when opened
        self.retrying: set[str] = set()  # failed ids taken up again (with retry_failed)
        self.records_before = 0  # distinct ids the file held when opened
        self.superseded = 0  # records a later one of their id supersedes (see output_reader)
        self.repaired_bytes = 0  # the torn tail cut off
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
        """Read the ids already written (see :mod:`flows.data.output_reader`); cut a torn tail off.

        Raises:
            InputError: a complete line is not a record (naming each such line); the file is
                then left exactly as it was, torn tail included.
        """
        scan = OutputScan(self.path)
        scan.settle()
        if scan.foreign:  # not our file, or damaged: refuse it without touching it
            problem = "not a record written by refine"
            problems = [FieldProblem(number, None, problem) for number in scan.foreign]
            raise InputError(self.path, problems, hint="choose another --output or repair it")
        held = scan.ids  # each id once, its latest record's status (the scan's rule)
        self.failed = scan.failed_ids()
        self.retrying = set(self.failed) if self.retry_failed else set()
        self.finished = held - self.retrying
        self.records_before = len(held)
        self.superseded = scan.superseded
        if scan.torn_bytes:
            os.truncate(self.path, scan.offset)  # a torn last line is never read as a record
            self.repaired_bytes = scan.torn_bytes
        self.complete_bytes = scan.offset

    def append(self, trajectory: Trajectory) -> bool:
        """Write one record as a single line; False (and nothing written) if its id is done:
        finished before (and not retried), or already written since opening."""
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
