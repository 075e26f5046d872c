"""The Prefect operations commands of ``refine``: ``server`` (and ``server stop``), ``serve``,
``deploy`` and ``api-key-secret``.

Kept apart from :mod:`flows.cli` so that running a batch and operating Prefect evolve apart;
the main app imports them when they are named (:mod:`flows.cli.lazy`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.guard import run_guarded
from flows.cli.input_options import (
    INPUT_HELP,
    Limit,
    MapOption,
    Sample,
    SampleSeed,
    Split,
    Subset,
    input_overrides,
)
from flows.deployments import DEFAULT_DEPLOYMENT
from flows.ops.server import server_cmd

__all__ = ["api_key_secret_cmd", "deploy_cmd", "serve_cmd", "server_app"]

Input = Annotated[Path, typer.Argument(help=INPUT_HELP + " A path the runs can read.")]
Output = Annotated[Path, typer.Option("--output", "-o", help="Output JSONL (resumed).")]
Task = Annotated[str | None, typer.Option(help="generic, summarize, translate, qa, codegen.")]
Steps = Annotated[int | None, typer.Option(help="Refinement steps T.")]
Model = Annotated[str | None, typer.Option(help="Model name at the endpoint.")]
BaseUrl = Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")]
ChunkSize = Annotated[int | None, typer.Option(help="Items per Prefect task.")]
Concurrency = Annotated[int | None, typer.Option(help="Requests in flight, whole run.")]
KeySecret = Annotated[
    str | None,
    typer.Option(help="Prefect Secret block with the API key (else the runner's environment)."),
]
Config = Annotated[Path | None, typer.Option("--config", help="TOML config file.")]
Name = Annotated[str, typer.Option(help="Deployment name.")]
Cron = Annotated[str | None, typer.Option(help='Schedule, e.g. "0 2 * * *" (02:00 daily).')]
BatchApi = Annotated[
    bool | None,
    typer.Option(
        "--batch-api/--online",
        help="Runs send each step's requests through the Batch API, or online (default: the "
        "config's mode, else online).",
    ),
]


def _prepare(
    input_path: Path,
    output: Path,
    config: Path | None,
    model: str | None,
    base_url: str | None,
    api_key_secret: str | None,
    **settings: Any,
) -> tuple[dict[str, Any], Any]:
    """Check the server, the settings and the dataset now (a typo fails here, not at 2 a.m.),
    then build the deployment's parameters. ``settings``: the command's other options."""
    from flows.config.run import build_run_config
    from flows.deployments import batch_parameters
    from flows.loop.preflight import load_input

    _require_server()
    endpoint = {"model": model, "base_url": base_url, "api_key_secret": api_key_secret}
    fields = ("task", "steps", "chunk_size", "concurrency")
    overrides = {**{k: settings[k] for k in fields}, "endpoint": endpoint}
    batch_api = settings.get("batch_api")
    overrides["mode"] = None if batch_api is None else ("batch" if batch_api else "online")
    chosen = ("map_pairs", "limit", "sample", "sample_seed", "split", "subset")
    overrides["input"] = input_overrides(*(settings.get(name) for name in chosen))

    def build() -> tuple[dict[str, Any], Any]:
        run_config = build_run_config(overrides, config)
        load_input(input_path, run_config)  # every chosen row checked, none held
        return batch_parameters(input_path, output, run_config), run_config

    return run_guarded(build)


def _require_server() -> None:
    from flows.config.run import EnvironmentSettings

    if not EnvironmentSettings().prefect_api_url:
        typer.echo(
            "no Prefect server: start one with `refine server` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api",
            err=True,
        )
        raise typer.Exit(2)


def serve_cmd(
    input_path: Input,
    output: Output = Path("refined.jsonl"),
    task: Task = None,
    steps: Steps = None,
    model: Model = None,
    base_url: BaseUrl = None,
    chunk_size: ChunkSize = None,
    concurrency: Concurrency = None,
    api_key_secret: KeySecret = None,
    batch_api: BatchApi = None,
    map_pairs: MapOption = None,
    limit: Limit = None,
    sample: Sample = None,
    sample_seed: SampleSeed = None,
    split: Split = None,
    subset: Subset = None,
    config: Config = None,
    name: Name = DEFAULT_DEPLOYMENT,
    cron: Cron = None,
) -> None:
    """Serve the batch flow from this machine on a schedule (Prefect's serve); Ctrl-C stops."""
    from flows.deployments import serve_batch

    parameters, run_config = _prepare(**locals())
    serve_batch(name, parameters, run_config, cron)


def deploy_cmd(
    input_path: Input,
    output: Output = Path("refined.jsonl"),
    task: Task = None,
    steps: Steps = None,
    model: Model = None,
    base_url: BaseUrl = None,
    chunk_size: ChunkSize = None,
    concurrency: Concurrency = None,
    api_key_secret: KeySecret = None,
    batch_api: BatchApi = None,
    map_pairs: MapOption = None,
    limit: Limit = None,
    sample: Sample = None,
    sample_seed: SampleSeed = None,
    split: Split = None,
    subset: Subset = None,
    config: Config = None,
    name: Name = DEFAULT_DEPLOYMENT,
    cron: Cron = None,
    pool: Annotated[str, typer.Option(help="Work pool (a process pool is created if new).")] = (
        "refine"
    ),
) -> None:
    """Create the deployment on a work pool; start workers with `prefect worker start --pool`."""
    from flows.deployments import deploy_batch, ensure_process_pool

    parameters, run_config = _prepare(**locals())
    if asyncio.run(ensure_process_pool(pool)):
        typer.echo(f"created work pool {pool!r} (type process)")
    deployment_id = deploy_batch(name, pool, parameters, run_config, cron)
    typer.echo(
        f"deployment refine-batch/{name} ({deployment_id}) on pool {pool!r}\n"
        f"start a worker:  prefect worker start --pool {pool}\n"
        f"run it now:      prefect deployment run refine-batch/{name}"
    )


def api_key_secret_cmd(
    name: Annotated[str, typer.Argument(help="Name of the Secret block.")] = "refine-api-key",
) -> None:
    """Store the API key of this environment (OPENAI_API_KEY / REFINE_API_KEY or --config's)
    in a Prefect Secret block, for deployments run by workers that don't have it."""
    from flows.config.run import resolve_api_key
    from flows.llm.api_key import save_api_key_secret

    _require_server()
    key = resolve_api_key()
    if key is None:
        typer.echo("no API key here: set OPENAI_API_KEY or REFINE_API_KEY", err=True)
        raise typer.Exit(2)
    save_api_key_secret(name, key)
    typer.echo(f"saved the API key in Secret block {name!r}; deploy with --api-key-secret {name}")


server_app = typer.Typer()  # its help: server_cmd's docstring
server_app.callback(invoke_without_command=True)(server_cmd)


@server_app.command("stop")
def server_stop_cmd() -> None:
    """Stop the Prefect server that `refine run` keeps warm between runs (it records what it
    holds first); a server you started yourself is not touched."""
    from prefect.settings import get_current_settings

    from flows.ops.warm_server import stop_warm_server

    stopped = run_guarded(lambda: stop_warm_server(Path(get_current_settings().home)))
    typer.echo(f"stopped the Prefect server at {stopped}" if stopped else "no server to stop")
