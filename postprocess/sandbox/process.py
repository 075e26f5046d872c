"""Run one sandbox process: feed stdin, read output and report within bounds, kill its group.

``subprocess.run(timeout=...)`` is not enough here: it reads all output into memory (a print loop
would fill the host's), kills only the direct child, and waits for every holder of the pipes.
This loop keeps the head and tail of the output, caps the report, and on timeout or exit sends
SIGKILL to the whole process group before reaping, so the group id cannot have been reused.
No ``preexec_fn``: the engine calls this from threads, where forking Python code is unsafe.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Finished", "run_process"]

_CHUNK = 65536
_EXIT_GRACE = 1.0  # seconds to drain pipes after the main process ends and its group is killed


@dataclass(frozen=True)
class Finished:
    """What a process left: its trimmed output, its report bytes and how it ended."""

    output: str
    report: bytes
    exit_status: int
    timed_out: bool
    seconds: float


class _HeadTail:
    """Keeps the first and last bytes of a stream and counts what it dropped between them."""

    def __init__(self, limit: int) -> None:
        self._head_room = limit // 2
        self._tail_room = limit - self._head_room
        self._head = bytearray()
        self._tail = bytearray()
        self._cut = 0

    def add(self, data: bytes) -> None:
        room = self._head_room - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        excess = len(self._tail) - self._tail_room
        if excess > 0:
            del self._tail[:excess]
            self._cut += excess

    def text(self) -> str:
        head = self._head.decode("utf-8", "replace")
        tail = self._tail.decode("utf-8", "replace")
        return f"{head}\n[... {self._cut} bytes cut ...]\n{tail}" if self._cut else head + tail


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signal.SIGKILL)


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    stdin_data: bytes,
    wall_seconds: float,
    max_output_bytes: int,
    max_report_bytes: int,
) -> Finished:
    """Run ``argv`` plus one last argument: the number of the fd it writes its report to.

    stdout and stderr are merged into one trimmed text. The process gets a new session (and so a
    process group of its own), which is killed whole when it runs past ``wall_seconds`` or exits.
    """
    started = time.monotonic()
    deadline = started + wall_seconds
    report_read, report_write = os.pipe()
    try:
        proc = subprocess.Popen(
            [*argv, str(report_write)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(report_write,),
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException:
        os.close(report_read)
        raise
    finally:
        os.close(report_write)
    output = _HeadTail(max_output_bytes)
    report = bytearray()
    exited = False
    readers = 2  # output and report, until each reaches end of file
    pidfd = os.pidfd_open(proc.pid)
    try:
        stdin, stdout = proc.stdin, proc.stdout
        if stdin is None or stdout is None:  # cannot happen with PIPE; keeps the types honest
            raise RuntimeError("subprocess pipes missing")
        os.set_blocking(stdin.fileno(), False)
        pending = memoryview(stdin_data)
        with selectors.DefaultSelector() as selector:
            selector.register(stdout.fileno(), selectors.EVENT_READ, "output")
            selector.register(report_read, selectors.EVENT_READ, "report")
            selector.register(pidfd, selectors.EVENT_READ, "exit")
            selector.register(stdin.fileno(), selectors.EVENT_WRITE, "stdin")
            stop_at = deadline
            while readers and time.monotonic() < stop_at:
                for key, _ in selector.select(max(0.0, stop_at - time.monotonic())):
                    fd = int(key.fd)
                    if key.data == "stdin":
                        try:
                            pending = pending[os.write(fd, pending) :]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            selector.unregister(fd)
                            stdin.close()
                    elif key.data == "exit":
                        # Stragglers of the main process go now, or they would hold the pipes.
                        exited = True
                        _kill_group(proc.pid)
                        selector.unregister(fd)
                        stop_at = min(deadline, time.monotonic() + _EXIT_GRACE)
                    else:
                        data = os.read(fd, _CHUNK)
                        if not data:
                            selector.unregister(fd)
                            readers -= 1
                        elif key.data == "output":
                            output.add(data)
                        elif len(report) < max_report_bytes:
                            report += data[: max_report_bytes - len(report)]
    finally:
        _kill_group(proc.pid)  # before wait(): until reaped, the group id cannot be reused
        exit_status = proc.wait()
        os.close(pidfd)
        os.close(report_read)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
    return Finished(
        output=output.text(),
        report=bytes(report),
        exit_status=exit_status,
        timed_out=readers > 0 and not exited,
        seconds=time.monotonic() - started,
    )
