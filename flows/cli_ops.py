"""The Prefect operations commands of ``refine``: ``server``, ``serve`` and ``deploy``.

Kept apart from :mod:`flows.cli` so that running a batch and operating Prefect evolve apart;
:func:`register_ops` adds them to the main app.
"""

from __future__ import annotations

import typer

from flows.prefect_server_cmd import server_cmd

__all__ = ["register_ops"]


def register_ops(app: typer.Typer) -> None:
    """Add the operations commands to ``app``."""
    app.command("server")(server_cmd)
