"""``refine eval``: the steps-versus-quality figures of a run, or of two runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from flows.cli.guard import run_guarded

if TYPE_CHECKING:
    from flows.eval.run import EvalRequest

__all__ = ["eval_command"]


def eval_command(
    outputs: Annotated[
        list[Path],
        typer.Argument(
            help="The --output file of a run; with --compare, A then B (then C, ...).",
            show_default=False,
        ),
    ],
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Compare runs: each later one against A, and the cost-quality frontier of "
            "all (frontier.png): refine eval --compare A B [C ...].",
        ),
    ] = False,
    reward: Annotated[
        str | None, typer.Option(help="Reward label to steer by (default: the run's primary).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for JSON, CSV and PNG (default: OUTPUT.eval/ or B.compare/)."),
    ] = None,
    select: Annotated[
        str, typer.Option(help="--compare's final draft per item: output, best or last.")
    ] = "output",
    resamples: Annotated[int, typer.Option(help="--compare: bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="--compare: bootstrap seed.")] = 0,
    prefect: Annotated[
        bool,
        typer.Option("--prefect", help="Run as a Prefect flow: table and plots as artifacts."),
    ] = False,
    input_path: Annotated[
        Path | None,
        typer.Option("--input", help="With --score: the dataset the run read (references)."),
    ] = None,
    score: Annotated[
        list[str] | None,
        typer.Option(help="Reward spec to compute now from --input (repeatable): bleu, chrf, …"),
    ] = None,
) -> None:
    """Per step: reward mean and spread, share still running, share whose best draft it is,
    cumulative tokens and latency; then the best/last/output selections. Writes JSON, CSV and
    PNG plots. With --compare, B (and C, ...) against A per step with a paired bootstrap on the
    final reward, and every run's returned-output reward against its tokens per item on one
    plot: the frontier.
    With --input and --score, drafts are first scored with rewards the run did not compute.
    """
    settings = {"reward": reward, "select": select, "resamples": resamples, "seed": seed}
    scoring = {"dataset": input_path, "scores": tuple(score or ())}
    run_guarded(lambda: _evaluate(outputs, compare, out_dir, settings | scoring, prefect))


def _evaluate(
    outputs: list[Path],
    compare: bool,
    out_dir: Path | None,
    settings: dict[str, Any],
    prefect: bool,
) -> None:
    # Imported here so `refine --help` does not pay for matplotlib and numpy.
    from flows.eval.run import EvalRequest, default_folder, evaluate_files
    from refine.errors import ConfigError

    if compare != (len(outputs) >= 2):
        raise ConfigError(
            f"--compare takes two output files or more, A then B (then C, ...); got {len(outputs)}"
            if compare
            else f"refine eval takes one output file (or --compare A B ...); got {len(outputs)}"
        )
    folder = out_dir or default_folder(outputs)
    request = EvalRequest(tuple(outputs), folder, **settings).checked()
    if prefect:
        _run_flow(request)
        return
    result = evaluate_files(request)
    for table in result.tables:
        Console().print(table)
    Console().print(f"wrote {', '.join(str(p) for p in result.files)}", highlight=False)


def _run_flow(request: EvalRequest) -> None:
    from flows.evaluate import refine_eval
    from flows.ops.lifecycle import drain_prefect_workers, offline_prefect

    try:
        with offline_prefect():
            files = refine_eval(
                request.outputs[-1],
                baseline=request.outputs[0] if request.compare else None,
                out_dir=request.folder,
                reward=request.reward,
                select=request.select,
                resamples=request.resamples,
                seed=request.seed,
                dataset=request.dataset,
                scores=list(request.scores),
            )
    finally:
        drain_prefect_workers()
    Console().print(f"wrote {', '.join(files)} (and the flow run's artifacts)", highlight=False)
