"""``refine show``: look at a run's items, one draft after another, in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from flows.cli.guard import run_guarded

__all__ = ["show_command"]

_FIRST_FEW = 20


def show_command(
    output: Annotated[
        Path, typer.Argument(help="The --output file of `refine run`.", show_default=False)
    ],
    ids: Annotated[
        list[str] | None,
        typer.Argument(help="Item ids to show (default: the table of items).", show_default=False),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Show the failed items (among IDs, if given).")
    ] = False,
) -> None:
    """Show items' drafts step by step: the word diff from the previous draft
    ([-removed-] {+added+}), each draft's tokens, rewards, problems and critique, the
    best-of-N candidates, why the item stopped and which draft it returned.
    With no ID and no --failed, a table of the items (the latest record of each id).
    """
    run_guarded(lambda: _show(output, tuple(ids or ()), failed))


def _show(output: Path, ids: tuple[str, ...], failed: bool) -> None:
    from flows.view.items import load_items, torn_tail_note
    from flows.view.safe_text import visible
    from flows.view.terminal import items_table, show_items

    console = Console()
    loaded = load_items(output, ids, failed)
    records = loaded.records
    name = escape(visible(str(output)))
    if loaded.torn_tail:
        Console(stderr=True).print(
            torn_tail_note(output), highlight=False, soft_wrap=True, markup=False
        )
    if ids or failed:
        if not records and ids:
            given = escape(visible(", ".join(dict.fromkeys(ids))))
            console.print(
                f"none of the given ids failed in {name} ({given})",
                highlight=False,
                soft_wrap=True,
            )
            return
        if not records:
            console.print(f"no failed items in {name}", highlight=False)
            return
        show_items(console, records)
        return
    if not records:
        console.print(f"{name} holds no items yet", highlight=False)
        return
    console.print(items_table(records[:_FIRST_FEW]))
    if len(records) > _FIRST_FEW:
        console.print(f"… and {len(records) - _FIRST_FEW:,} more items", highlight=False)
    # the example names an item worth a look: one that ran, else the first
    first = next((r.id for r in records if r.status == "ok" and r.drafts), records[0].id)
    console.print(
        f"show one item's drafts: [bold]refine show {name} {escape(visible(first))}[/]"
        + (
            f"; the failed ones: [bold]refine show {name} --failed[/]"
            if any(r.status == "failed" for r in records)
            else ""
        ),
        highlight=False,
        soft_wrap=True,
    )
