"""How every ``refine`` command turns errors into messages and exit codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from refine.errors import RefineError

__all__ = ["run_guarded"]

T = TypeVar("T")


def run_guarded(action: Callable[[], T]) -> T:
    """Run ``action``; a RefineError becomes its message and exit code, never a traceback."""
    try:
        return action()
    except RefineError as exc:
        # escaped: messages name things like "[endpoint] model" that are not markup
        message = f"[bold red]error:[/] {escape(str(exc))}"
        Console(stderr=True).print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        Console(stderr=True).print(
            "[yellow]interrupted: finished items are in the output; run again to resume"
        )
        raise typer.Exit(130) from None
