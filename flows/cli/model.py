"""``refine serve-model``: serve a GGUF model on 127.0.0.1 as an OpenAI-compatible endpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.guard import run_guarded
from flows.config.run import build_run_config

__all__ = ["serve_model"]


def serve_model(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 8080,
    model_path: Annotated[
        Path | None, typer.Option(help="A GGUF file; default: the packaged Gemma 3 270M.")
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Slots: requests answered at once (one process each).")
    ] = None,
    ctx_size: Annotated[int | None, typer.Option(help="Context tokens per slot.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per slot.")] = None,
    chat_format: Annotated[str | None, typer.Option(help="llama-cpp-python chat format.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (its local_model table).")
    ] = None,
    ready_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Serve a model until Ctrl-C or SIGTERM; print the base URL once it answers."""
    overrides: dict[str, Any] = {
        "local_model": {
            "model_path": model_path,
            "parallel": parallel,
            "ctx_size": ctx_size,
            "threads": threads,
            "chat_format": chat_format,
        }
    }
    if parent_pid is not None:  # started by `refine run`: end with it, even after a kill -9
        from flows.local.backend import exit_with_parent

        exit_with_parent(parent_pid)

    def action() -> None:
        from flows.local.model import check_local_extra, model_alias, resolve_model_path
        from flows.local.server import serve

        local = build_run_config(overrides, config).local_model
        path = resolve_model_path(local.model_path)
        check_local_extra()

        def announce(url: str) -> None:
            print(
                f"serving {path.name} as model {model_alias(path)!r} with {local.parallel} "
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
