"""Signals that ask a command to stop (SIGTERM, SIGHUP) unwind it like Ctrl-C does.

``timeout``, systemd, schedulers and a closed terminal send SIGTERM or SIGHUP; by default they
end the process where it stands, and during a flow run Prefect's engine turns SIGTERM into a
``TerminationSignal`` traceback. Raised as a :class:`Stopped` (a ``KeyboardInterrupt``), they
run every ``finally`` on the way out (the temporary Prefect server is stopped, the output is
left whole up to its last line), and the command exits with ``128 + signal``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = [
    "STOP_SIGNALS",
    "Stopped",
    "interrupt_exit_code",
    "stop_signal_of",
    "stop_signals_interrupt",
]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by ``signum``; handled wherever Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Stopped` (main thread only).

    Prefect's flow engine installs its own SIGTERM handler for the flow run and, on its way
    out, restores this one and sends the signal again, so both paths end here.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_signal_of(exc: BaseException) -> int | None:
    """The signal an interrupt stands for: SIGINT for Ctrl-C, else the one that stopped us.

    Prefect's ``TerminationSignal`` (raised from its SIGTERM handler when the signal lands
    outside the flow's own code) is recognised without importing Prefect.
    """
    if isinstance(exc, Stopped):
        return exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    prefect_exceptions = sys.modules.get("prefect.exceptions")
    termination = getattr(prefect_exceptions, "TerminationSignal", None)
    if termination is not None and isinstance(exc, termination):
        return int(exc.signal)
    return None


def interrupt_exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + signum
