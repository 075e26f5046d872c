"""How every ``refine`` command turns errors into messages and exit codes."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from flows.ops.signals import interrupt_exit_code, stop_signal_of, stop_signals_interrupt
from refine.errors import RefineError

__all__ = ["run_guarded"]

T = TypeVar("T")

_RESUME = "finished items are in the output; run again to resume"


def run_guarded(action: Callable[[], T]) -> T:
    """Run ``action``; a RefineError becomes its message and exit code, never a traceback.

    Ctrl-C, SIGTERM and SIGHUP stop it the same way: one line, exit code 128 + the signal
    (130, 143, 129).
    """
    try:
        with stop_signals_interrupt():
            return action()
    except RefineError as exc:
        # escaped: messages name things like "[endpoint] model" that are not markup
        message = f"[bold red]error:[/] {escape(str(exc))}"
        Console(stderr=True).print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except BaseException as exc:
        signum = stop_signal_of(exc)
        if signum is None:
            raise
        what = (
            "interrupted"
            if signum == signal.SIGINT
            else f"stopped by {signal.Signals(signum).name}"
        )
        Console(stderr=True).print(f"[yellow]{what}: {_RESUME}", highlight=False, soft_wrap=True)
        raise typer.Exit(interrupt_exit_code(signum)) from None
