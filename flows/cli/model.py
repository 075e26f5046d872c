"""``refine serve-model`` serves a GGUF model on 127.0.0.1 as an OpenAI-compatible endpoint;
``refine models`` lists the packaged models it can serve."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.guard import run_guarded
from flows.config.run import build_run_config

__all__ = ["LOCAL_MODEL_HELP", "list_models", "serve_model"]

LOCAL_MODEL_HELP = (
    "Local model: a name from `refine models` or a GGUF file; default qwen2.5-coder-0.5b-instruct."
)


def serve_model(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 8080,
    local_model: Annotated[str | None, typer.Option(help=LOCAL_MODEL_HELP)] = None,
    model_path: Annotated[
        Path | None, typer.Option(help="A GGUF file (the same as --local-model PATH).")
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Slots: requests answered at once (one process each).")
    ] = None,
    ctx_size: Annotated[int | None, typer.Option(help="Context tokens per slot.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per slot.")] = None,
    chat_format: Annotated[str | None, typer.Option(help="llama-cpp-python chat format.")] = None,
    prompt_cache_mib: Annotated[
        int | None,
        typer.Option(help="MiB per slot for computed prompt prefixes (default 512); 0 = off."),
    ] = None,
    slot_affinity: Annotated[
        bool | None,
        typer.Option(
            "--slot-affinity/--no-slot-affinity",
            help="Send a request to the slot holding most of its prompt (default: on).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (its local_model table).")
    ] = None,
    ready_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Serve a model until Ctrl-C or SIGTERM; print the base URL once it answers."""
    if local_model is not None and model_path is not None:
        raise typer.BadParameter("give --local-model or --model-path, not both")
    overrides: dict[str, Any] = {
        "local_model": {
            "model": local_model if model_path is None else str(model_path),
            "parallel": parallel,
            "ctx_size": ctx_size,
            "threads": threads,
            "chat_format": chat_format,
            "prompt_cache_mib": prompt_cache_mib,
            "slot_affinity": slot_affinity,
        }
    }
    if parent_pid is not None:  # started by `refine run`: end with it, even after a kill -9
        from flows.local.backend import exit_with_parent

        exit_with_parent(parent_pid)

    def action() -> None:
        from flows.local.model import check_local_extra, resolve_model
        from flows.local.server import serve

        served = resolve_model(build_run_config(overrides, config).local_model)
        local, path = served.config, served.path
        check_local_extra()

        def announce(url: str) -> None:
            print(
                f"serving {path.name} as model {served.alias!r} with {local.parallel} "
                f"slot(s) at {url}  (Ctrl-C stops it)",
                flush=True,
            )
            if ready_file is not None:  # written whole, then renamed: never read half-written
                partial = ready_file.with_suffix(".partial")
                partial.write_text(url)
                partial.replace(ready_file)

        try:
            serve(local, path, port, announce)
        except KeyboardInterrupt:
            print("stopped: the model server and its slots have exited", file=sys.stderr)
            raise typer.Exit(130) from None

    run_guarded(action)


def list_models() -> None:
    """List the packaged local models: installed or not, in the cache or not, and how to get them.

    Reads the installed packages' metadata only: nothing is assembled, imported or loaded.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from flows.local.assembly import cached_file, installed
    from flows.local.catalogue import CATALOGUE, DEFAULT_MODEL

    table = Table(title=escape("Local models (refine run --local-model NAME; [local_model] model)"))
    for column in ("name", "installed", "in cache", "size", "licence", "good for", "install"):
        table.add_column(column, overflow="fold")
    for entry in CATALOGUE:
        name = f"{entry.name} (default)" if entry.name == DEFAULT_MODEL else entry.name
        table.add_row(
            name,
            "yes" if installed(entry) else "no",
            "yes" if cached_file(entry) is not None else "no",
            f"{entry.size / 1e6:,.0f} MB",
            entry.licence,
            entry.good_for,
            escape(entry.install_command),  # "[local]" is no rich markup
        )
    Console(width=200).print(table)
