"""The ``refine`` group, whose rarer commands are imported only when named.

``refine run`` is the command whose start counts (issue 17: its first request within a second
of the command): it should not import the export, eval, templates and Prefect-operations
modules, nor what they import, just to build the command line. Typer builds every registered
command up front, so those commands are registered here by module path instead, and built by
:class:`LazyCommands` when the command line names one, or when ``--help`` lists them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # Typer carries its own copy of click
    from typer._click.core import Command, Context

__all__ = ["LAZY_COMMANDS", "LazyCommands"]

LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, attribute): a command function, or a Typer app for a group
    "export": ("flows.cli.export", "export_command"),
    "eval": ("flows.cli.eval", "eval_command"),
    "report": ("flows.cli.report", "report_command"),
    "show": ("flows.cli.show", "show_command"),
    "server": ("flows.cli.ops", "server_app"),
    "serve": ("flows.cli.ops", "serve_cmd"),
    "deploy": ("flows.cli.ops", "deploy_cmd"),
    "api-key-secret": ("flows.cli.ops", "api_key_secret_cmd"),
    "templates": ("flows.cli.templates", "templates_app"),
}
"""The commands imported on use, in the order ``refine --help`` lists them (after the others)."""


class LazyCommands(TyperGroup):
    """A Typer group that builds the commands of :data:`LAZY_COMMANDS` on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        """The eager commands, then the lazy ones."""
        eager = super().list_commands(ctx)
        return [*eager, *(name for name in LAZY_COMMANDS if name not in eager)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command ``cmd_name``, importing its module if it is a lazy one."""
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            self.add_command(_build(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


def _build(name: str) -> Command:
    module, attribute = LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)  # as add_typer would: no completion options
        group.name = name
        return group
    holder = typer.Typer(add_completion=False)
    holder.command(name)(target)
    # a Typer of one command and no callback is that command itself
    return typer.main.get_command(holder)
