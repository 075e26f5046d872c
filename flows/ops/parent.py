"""Child processes that end with the process that started them, even after its ``kill -9``."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["exit_with_parent"]

_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies; exit now if it already has.

    Called in the child itself, first thing, rather than through ``preexec_fn``, which is unsafe
    in a parent that runs threads (Prefect's do). Linux sends the signal when the *thread* that
    started the child ends, so the parent must start it from a thread that lives as long as it
    does (the main thread).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(1)
