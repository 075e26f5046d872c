"""The ``refine`` command line (typer): one module per command group.

The script entry point ``refine = "flows.cli:app"`` names this package; :mod:`flows.cli.app`
builds the application.
"""

from flows.cli.app import app

__all__ = ["app"]
