"""What Prefect prints on the terminal while a run is stopped by Ctrl-C, SIGTERM or SIGHUP.

Stopping a run cancels its flow run and the task runs in flight, and Prefect reports each as a
crash (``Crash detected! Execution was cancelled by the runtime environment.``, then
``Finished in state Crashed(...)``), two ERROR lines per run, and its event worker counts the
events it still sends. The command already says, in one line, that it was stopped and how to
resume; these reports still reach the Prefect UI (the runs show as Crashed, with the reason),
only the terminal is spared them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["StoppedRunNoise", "quiet_stopped_runs"]

# Prefect's state messages for a run ended by cancellation or a signal (prefect/states.py,
# exception_to_crashed_state); a crash for any other reason still prints.
_STOPPED = (
    "Execution was cancelled by the runtime environment.",
    "Execution was aborted by an interrupt signal.",
    "Execution was aborted by a termination signal.",
)
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_DRAIN_PROGRESS = "Still processing items:"


class StoppedRunNoise(logging.Filter):
    """Drops crash reports of runs that were stopped, and the event worker's drain count."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name.startswith(_RUN_LOGGERS) and any(text in message for text in _STOPPED):
            return False
        return not message.startswith(_DRAIN_PROGRESS)


@contextmanager
def quiet_stopped_runs() -> Iterator[None]:
    """Within the block, Prefect's console handlers leave out :class:`StoppedRunNoise`."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    handlers = {
        handler
        for name in ("", "prefect", *_RUN_LOGGERS)  # Prefect's console handler is the root's
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, PrefectConsoleHandler)
    }
    noise = StoppedRunNoise()
    for handler in handlers:
        handler.addFilter(noise)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(noise)
