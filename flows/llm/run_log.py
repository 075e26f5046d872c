"""A log line for the user: to the Prefect run's log inside a run, else a module's logger.

Inside a flow or task run, Prefect's run logger shows INFO lines on the console and in the UI
beside the run; a module's own logger shows only warnings there (Prefect's root level).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["run_log"]


def run_log(fallback: logging.Logger, level: int, message: str, *args: object) -> None:
    """Log ``message % args`` at ``level`` to the current run's logger, else to ``fallback``."""
    # No run can be under way before Prefect's context module is loaded; looking it up in
    # sys.modules, not importing it, leaves Prefect's logging set-up (run on import) alone.
    context = sys.modules.get("prefect.context")
    if context is None or not (context.FlowRunContext.get() or context.TaskRunContext.get()):
        fallback.log(level, message, *args)
        return
    from prefect import get_run_logger

    get_run_logger().log(level, message, *args)
