"""``refine report``: one self-contained HTML page of a run's output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.cli.guard import run_guarded

__all__ = ["page_size", "report_command"]


def report_command(
    output: Annotated[Path, typer.Argument(help="The --output file of a run.", show_default=False)],
    html: Annotated[
        Path,
        typer.Option(
            "--html",
            help="The page to write: one file, no server needed (plots and script inline).",
            show_default=False,
        ),
    ],
) -> None:
    """One HTML page of a run: its figures, the eval plots, a sortable table of every item and
    each item's trajectory with word diffs between drafts. Opens offline in any browser."""
    run_guarded(lambda: _report(output, html))


def _report(output: Path, html: Path) -> None:
    # Imported here so `refine --help` does not pay for matplotlib and Jinja.
    from flows.view.html import write_report
    from flows.view.items import torn_tail_note

    written = write_report(output, html)
    if written.torn_tail:
        Console(stderr=True).print(
            torn_tail_note(output), highlight=False, soft_wrap=True, markup=False
        )
    Console().print(
        f"wrote {html} ({written.items:,} items, {page_size(html.stat().st_size)})",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )


def page_size(size: int) -> str:
    """``size`` bytes as KB below a megabyte (``0.0 MB`` says nothing), else as MB."""
    if size < 1_000_000:
        return f"{max(size / 1e3, 0.1):.1f} KB"
    return f"{size / 1e6:.1f} MB"
