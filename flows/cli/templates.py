"""``refine templates``: list, show and dry-run render the prompt templates (no model call)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.guard import run_guarded
from flows.cli.input_options import INPUT_HELP, MapOption, Split, Subset, input_overrides
from flows.config.run import RunConfig, build_run_config

__all__ = ["templates_app"]

templates_app = typer.Typer(help="List, show and dry-run render prompt templates.")
TemplateDirs = Annotated[
    list[Path] | None, typer.Option(help="Template folder searched first (repeatable).")
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config file.")]


def _config(
    template_dir: list[Path] | None, config_file: Path | None, task: str | None = None
) -> RunConfig:
    return build_run_config({"template_dirs": template_dir or None, "task": task}, config_file)


@templates_app.command("list")
def list_templates(template_dir: TemplateDirs = None, config: ConfigFile = None) -> None:
    """List every template on the search path and where it comes from."""
    from flows.loop.render import template_environment

    def action() -> None:
        env = template_environment(_config(template_dir, config))
        table = Table("name", "source", "path")
        for info in env.list_templates():
            table.add_row(info.name, "packaged" if info.packaged else "user", str(info.path))
        Console().print(table)
        folders = [*env.user_dirs, env.packaged_dir]
        Console().print("search path: " + " -> ".join(str(f) for f in folders), highlight=False)

    run_guarded(action)


@templates_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Template name, e.g. summarize/refine.j2.")],
    template_dir: TemplateDirs = None,
    config: ConfigFile = None,
) -> None:
    """Print a template's source and the file it comes from."""
    from flows.loop.render import template_environment

    def action() -> None:
        env = template_environment(_config(template_dir, config))
        text, path = env.source(name)
        Console(stderr=True).print(f"# {path}", highlight=False)
        print(text)

    run_guarded(action)


@templates_app.command("render")
def render(
    task: Annotated[
        str, typer.Argument(help="Task kind: generic, summarize, translate, qa, codegen.")
    ],
    input_path: Annotated[Path, typer.Option("--input", help=INPUT_HELP)],
    line: Annotated[
        int, typer.Option(min=1, help="Line of the row to render (a row's number, from 1).")
    ] = 1,
    step: Annotated[
        int, typer.Option(min=1, help="Step to render (>1 uses placeholder drafts).")
    ] = 1,
    template_dir: TemplateDirs = None,
    map_pairs: MapOption = None,
    split: Split = None,
    subset: Subset = None,
    config: ConfigFile = None,
) -> None:
    """Print the messages step STEP would send for one row: a dry run that calls nothing."""
    from flows.cli.dry_run import render_row

    def action() -> None:
        chosen = input_overrides(map_pairs, None, None, None, split, subset)
        run_config = build_run_config(
            {"template_dirs": template_dir or None, "task": task, "input": chosen}, config
        )
        for message in render_row(run_config, input_path, line, step):
            Console().rule(f"[bold]{message['role']}")
            print(message["content"])

    run_guarded(action)
