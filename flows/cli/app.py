"""The ``refine`` command line: the ``run`` command, and every command group registered on it.

Exit codes: 0 every item succeeded, 1 some items failed, 2 bad input or configuration (or an
endpoint that refuses every request: 401/403/404), 130 interrupted (Ctrl-C), 143 stopped by
SIGTERM, 129 by SIGHUP (see flows/ops/signals.py).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from flows.cli.lazy import LazyCommands
from flows.cli.model import LOCAL_MODEL_HELP, list_models, serve_model
from flows.config.loop import parse_samples
from flows.config.run import EnvironmentSettings, build_run_config
from flows.config.text import refuse_paths_not_text

if TYPE_CHECKING:
    from flows.batch import BatchSummary
    from flows.config.run import RunConfig
    from flows.ops.lifecycle import PrefectApi

__all__ = ["app"]

app = typer.Typer(
    cls=LazyCommands,  # export, eval, templates and the Prefect operations: imported when named
    help="Multi-step refinement of LLM predictions, run as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve-model")(serve_model)
app.command("models")(list_models)


def _samples_option(value: str | None) -> str | None:
    """``--samples`` as typer checks it: a count or counts, else a usage error (exit 2)."""
    try:
        parse_samples(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@app.command()
def run(
    input_path: Annotated[Path, typer.Argument(help=INPUT_HELP)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output JSONL (resumed).")] = Path(
        "refined.jsonl"
    ),
    task: Annotated[
        str | None, typer.Option(help="generic, summarize, translate, qa, codegen.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Refinement steps T.")] = None,
    samples: Annotated[
        str | None,
        typer.Option(
            help="Best-of-N: candidates per step, N or one count per step (4,1,1); "
            "needs --temperature above 0.",
            callback=_samples_option,
        ),
    ] = None,
    stop_sampling_when_valid: Annotated[
        bool | None,
        typer.Option(
            "--stop-sampling-when-valid/--no-stop-sampling-when-valid",
            help="Draw a step's candidates one at a time; stop at the first with no problems.",
            show_default=False,
        ),
    ] = None,
    supports_n: Annotated[
        bool | None,
        typer.Option(
            "--supports-n/--no-supports-n",
            help="The endpoint honours n: a step's N candidates in one request.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name at the endpoint.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")] = None,
    local_model: Annotated[str | None, typer.Option(help=LOCAL_MODEL_HELP)] = None,
    template_dir: Annotated[
        list[Path] | None, typer.Option(help="Template folder searched first (repeatable).")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight, whole run.")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="Items per Prefect task.")] = None,
    history: Annotated[int | None, typer.Option(help="Earlier drafts each step sees.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per answer.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, where supported.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the request cache.")
    ] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Request cache folder.")] = None,
    postprocess: Annotated[
        list[str] | None, typer.Option(help="Cleaner spec, in order (repeatable).")
    ] = None,
    validator: Annotated[
        list[str] | None, typer.Option(help="Validator name or pkg.module:fn (repeatable).")
    ] = None,
    reward: Annotated[
        list[str] | None, typer.Option(help="Reward name (repeatable); the first is primary.")
    ] = None,
    select: Annotated[str | None, typer.Option(help="Output draft: last or best.")] = None,
    critique: Annotated[
        bool | None, typer.Option("--critique/--no-critique", help="Self-Refine critique.")
    ] = None,
    reward_threshold: Annotated[
        float | None, typer.Option(help="Stop once the primary reward reaches this.")
    ] = None,
    plateau_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps without improvement.")
    ] = None,
    max_tokens_per_item: Annotated[int | None, typer.Option(help="Token budget per item.")] = None,
    max_tokens_per_run: Annotated[int | None, typer.Option(help="Token budget per run.")] = None,
    allow_unsandboxed: Annotated[
        bool,
        typer.Option(
            "--allow-unsandboxed",
            help="UNSAFE: run generated code with resource limits only where no sandbox runs.",
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Report bad input rows and run the rest (else refuse all)."
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Run again the items whose latest record in --output is failed, appending "
            "their new records there (resume as usual otherwise).",
        ),
    ] = False,
    batch_api: Annotated[
        bool | None,
        typer.Option(
            "--batch-api/--online",
            help="Send each step's requests through the endpoint's Batch API (step-major, "
            "about half the price; answers within [batch] completion_window), or online "
            "(default: the config's mode, else online).",
        ),
    ] = None,
    map_pairs: MapOption = None,
    limit: Limit = None,
    sample: Sample = None,
    sample_seed: SampleSeed = None,
    split: Split = None,
    subset: Subset = None,
    summary_json: Annotated[
        Path | None,
        typer.Option(help="Also write the summary's figures to this JSON file (for scripts)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    task_runner: Annotated[
        str, typer.Option(help="'default', or 'dask': shards on Dask workers (prefect-dask).")
    ] = "default",
    shards: Annotated[int, typer.Option(help="With --task-runner dask: how many shards.")] = 2,
    dask_address: Annotated[
        str | None, typer.Option(help="With --task-runner dask: a cluster (else a local one).")
    ] = None,
) -> None:
    """Refine every row of INPUT in T steps; write one JSON line per item to --output."""
    overrides: dict[str, Any] = {
        "postprocess": postprocess or None,
        "validators": validator or None,
        "rewards": reward or None,
        "select": select,
        "critique": {"enabled": critique},
        "stop": {
            "reward_threshold": reward_threshold,
            "plateau_steps": plateau_steps,
            "max_tokens_per_item": max_tokens_per_item,
            "max_tokens_per_run": max_tokens_per_run,
        },
        "sandbox": {"allow_unsandboxed": True if allow_unsandboxed else None},
        "task": task,
        "steps": steps,
        "samples": parse_samples(samples),  # checked by _samples_option
        "stop_sampling_when_valid": stop_sampling_when_valid,
        "template_dirs": template_dir or None,
        "concurrency": concurrency,
        "chunk_size": chunk_size,
        "history": history,
        "cache_dir": cache_dir,
        "use_cache": False if no_cache else None,
        "skip_invalid": True if skip_invalid else None,
        "retry_failed": True if retry_failed else None,
        "mode": None if batch_api is None else ("batch" if batch_api else "online"),
        "endpoint": {
            "model": model,
            "base_url": base_url,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "supports_n": supports_n,
        },
        "local_model": {"model": local_model},
        "input": input_overrides(map_pairs, limit, sample, sample_seed, split, subset),
    }
    if task_runner != "default":
        failed = run_guarded(
            lambda: _run_dask(
                input_path,
                output,
                config,
                overrides,
                (task_runner, shards, dask_address),
                summary_json,
            )
        )
        raise typer.Exit(0 if failed == 0 else 1)
    summary, skipped = run_guarded(
        lambda: _run(input_path, output, config, overrides, quiet, summary_json)
    )
    raise typer.Exit(0 if summary.failed == summary.failed_before == skipped == 0 else 1)


def _run_dask(
    input_path: Path,
    output: Path,
    config_file: Path | None,
    overrides: dict[str, Any],
    dask: tuple[str, int, str | None],
    summary_json: Path | None,
) -> int:
    """Shards on Dask workers (see flows/dask_shards.py); returns the failed records' count.
    ``dask``: the task runner's name, the shards, and a cluster's address (else a local one)."""
    from rich.console import Console
    from rich.table import Table

    from flows.cli.summary import write_figures
    from flows.dask_shards import run_on_dask
    from flows.llm.probe import probe_endpoint
    from flows.loop.preflight import load_input
    from refine.errors import ConfigError

    task_runner, shards, address = dask
    if task_runner != "dask":
        raise ConfigError(f"--task-runner is 'default' or 'dask', not {task_runner!r}")
    refuse_paths_not_text(
        INPUT=input_path, output=output, config=config_file, summary_json=summary_json
    )
    config = build_run_config(overrides, config_file)
    config.endpoint.require_target()  # each worker needs the endpoint: no local model here
    checked = load_input(input_path, config)  # every row checked before any worker starts
    probe_endpoint(str(config.endpoint.base_url), config.retry.connect_timeout_s)
    summary = run_on_dask(input_path, output, config, shards, address)
    chosen = [("input rows taken", checked.selection)] if checked.selection else []
    table = Table(title="refine run (dask)", show_header=False)
    for label, value in [
        ("output", str(summary.output_path)),
        *chosen,
        ("shards / worker processes", f"{summary.shards} / {len(summary.worker_pids)}"),
        ("records merged now / in all", f"{summary.merged} / {summary.records}"),
        ("ok / failed", f"{summary.ok} / {summary.failed}"),
    ]:
        table.add_row(label, value)
    Console().print(table)
    if summary_json is not None:
        figures = {"input_path": str(input_path), **summary.model_dump(mode="json")}
        figures |= {"selection": checked.selection, "exit_code": 0 if summary.failed == 0 else 1}
        write_figures(summary_json, figures)
    return summary.failed


def _run(
    input_path: Path,
    output: Path,
    config_file: Path | None,
    overrides: dict[str, Any],
    quiet: bool,
    summary_json: Path | None = None,
) -> tuple[BatchSummary, int]:
    """The run's summary and how many input rows were left out as invalid."""
    # Imported here so `refine --help` and `refine templates` don't pay for importing Prefect.
    from flows.cli.summary import print_skipped
    from flows.llm.probe import probe_endpoint
    from flows.local.endpoint import endpoint_for_run
    from flows.loop.preflight import load_input
    from flows.ops.lifecycle import offline_prefect

    refuse_paths_not_text(
        INPUT=input_path, output=output, config=config_file, summary_json=summary_json
    )
    config = build_run_config(overrides, config_file)  # flags over file over environment
    # a temporary Prefect server, where the run needs one, starts now and comes up (on another
    # core) while the dataset is read and checked and the flow's modules are imported
    with offline_prefect(_keep_warm_s(), wait=False) as prefect_api:
        checked = load_input(input_path, config)  # fail fast, before the model or the flow
        if checked.skipped:
            print_skipped(input_path, checked)
        with endpoint_for_run(config) as config:  # no endpoint: serve the local model meanwhile
            if config.endpoint.embedded:
                from rich.console import Console

                Console(stderr=True).print(
                    f"no endpoint configured: serving the local model {config.endpoint.model} "
                    f"({config.local_model.parallel} slot(s)) at {config.endpoint.base_url}",
                    highlight=False,
                    soft_wrap=True,  # one line a terminal may wrap, never broken mid-name
                )
            elif config.endpoint.base_url:  # a wrong URL fails now, before the batch
                probe_endpoint(config.endpoint.base_url, config.retry.connect_timeout_s)
            summary = _run_batch(input_path, output, config, checked.ids, quiet, prefect_api)
            if summary_json is not None:
                from flows.cli.summary import write_summary_json

                write_summary_json(summary_json, summary, input_path)
            return summary, len(checked.skipped_lines)


def _keep_warm_s() -> float:
    """How long a temporary Prefect server outlives the run, unused (0: it ends with it)."""
    from flows.ops.warm_server import DEFAULT_IDLE_TIMEOUT_S

    idle = EnvironmentSettings().server_idle_timeout_s
    return DEFAULT_IDLE_TIMEOUT_S if idle is None else idle


def _run_batch(
    input_path: Path,
    output: Path,
    config: RunConfig,
    ids: list[str],
    quiet: bool,
    prefect_api: PrefectApi,
) -> BatchSummary:
    from flows.batch import refine_batch
    from flows.cli.progress import RunProgress
    from flows.data.output import OutputLog
    from flows.ops.lifecycle import drain_prefect_workers
    from flows.ui.progress import OutputWatcher

    # repairs a torn tail, reports how much is left
    with OutputLog(output, retry_failed=config.retry_failed) as out:
        remaining = sum(item_id not in out.finished for item_id in ids)
        watcher = OutputWatcher(output, offset=out.complete_bytes)

    async def main() -> BatchSummary:
        with RunProgress(watcher, remaining, disable=quiet or not sys.stdout.isatty()) as bar:
            flow_run = asyncio.ensure_future(refine_batch(input_path, output, config))
            while not flow_run.done():
                bar.refresh()
                await asyncio.wait([flow_run], timeout=0.5)
            return flow_run.result()

    try:
        prefect_api.ready()  # the temporary server, if any, answers: the flow can start
        summary = asyncio.run(main())
    finally:
        drain_prefect_workers()
    from flows.cli.summary import print_summary

    print_summary(summary)
    return summary


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
