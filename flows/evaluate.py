"""``refine_eval``: evaluating output files as a Prefect flow (see :mod:`flows.eval.run`).

Inside Prefect (``refine eval --prefect``, or a deployment of ``flows/evaluate.py:refine_eval``
scheduled after the nightly batch) the table and the plots are also artifacts of the flow run:
a table artifact, a markdown summary, and one image artifact per plot. The images are PNG data
URLs, so they show in the UI with no file server; each is 20–60 kB.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from prefect import flow, get_run_logger
from rich.console import Console

from flows.eval.compare import CompareReport
from flows.eval.run import EvalRequest, EvalResult, default_folder, evaluate_files

__all__ = ["refine_eval"]


def _eval_run_name() -> str:
    from prefect.runtime import flow_run

    output = flow_run.parameters.get("output", "")
    baseline = flow_run.parameters.get("baseline")
    name = Path(str(output)).name
    return f"eval · {Path(str(baseline)).name} vs {name}" if baseline else f"eval · {name}"


@flow(name="refine-eval", flow_run_name=_eval_run_name, log_prints=False)
def refine_eval(
    output: Path,
    baseline: Path | None = None,
    out_dir: Path | None = None,
    reward: str | None = None,
    select: str = "output",
    resamples: int = 10_000,
    seed: int = 0,
    dataset: Path | None = None,
    scores: list[str] | None = None,
) -> list[str]:
    """Evaluate ``output`` (against ``baseline`` when given) and publish it as artifacts.

    Args:
        output: a run's output JSONL (B when comparing).
        baseline: a second run's output (A) to compare against; None for a single evaluation.
        out_dir: where the JSON, CSV and PNG files go (default: beside ``output``).
        reward: the reward label to steer by (default: the run's primary reward).
        select: when comparing, which draft is each item's final one: output, best or last.
        resamples: bootstrap resamples when comparing.
        seed: bootstrap seed.
        dataset: the dataset the run read, to score drafts with ``scores`` from its references.
        scores: reward specs to compute now (the first steers unless ``reward`` says).

    Returns:
        The paths of the files written.
    """
    outputs = (baseline, output) if baseline is not None else (output,)
    folder = out_dir or default_folder(outputs)
    request = EvalRequest(
        outputs, folder, reward, select, resamples, seed, dataset, tuple(scores or ())
    )
    result = evaluate_files(request)
    text = io.StringIO()
    for table in result.tables:
        Console(width=140, file=text).print(table)
    get_run_logger().info("evaluation of %s\n%s", output.name, text.getvalue())
    _publish(result, output)
    return [str(path) for path in result.files]


def _publish(result: EvalResult, output: Path) -> None:
    """Table, summary and one image artifact per plot; never fails the flow."""
    from prefect.artifacts import (
        create_image_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    kind = "compare" if isinstance(result.report, CompareReport) else "eval"
    slug = re.sub(r"[^a-z0-9]+", "-", output.stem.lower()).strip("-")
    key = f"refine-{kind}-{slug}"[:90]
    try:
        create_table_artifact(
            table=result.rows(), key=key, description=f"refine {kind}: {output.name}"
        )
        create_markdown_artifact(
            markdown=_summary_markdown(result), key=f"{key}-summary", description="summary"
        )
        for path in result.files:
            if path.suffix == ".png":
                url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
                image_key = f"{key}-{path.stem.replace('_', '-')}"[:100]
                create_image_artifact(image_url=url, key=image_key, description=path.name)
    except Exception as exc:  # noqa: BLE001 - an artifact is never worth a failed evaluation
        get_run_logger().warning("artifact not published: %s", exc)


def _summary_markdown(result: EvalResult) -> str:
    report = result.report
    files = "\n".join(f"- `{path}`" for path in result.files)
    if isinstance(report, CompareReport):
        head = (
            f"# {report.reward}: B = `{report.b}` against A = `{report.a}`\n\n"
            f"**{report.verdict}**\n\n{report.paired} paired items; tokens per item "
            f"A {report.tokens_a_mean:,.0f}, B {report.tokens_b_mean:,.0f}."
        )
    else:
        reasons = ", ".join(f"{k}: {v}" for k, v in report.stop_reasons.items())
        head = (
            f"# Evaluation of `{report.source}`\n\n{report.items} items ({report.ok} ok, "
            f"{report.failed} failed), up to {report.max_steps} steps; primary reward: "
            f"{report.primary or 'none'}.\n\nStop reasons: {reasons}."
        )
    return f"{head}\n\nFiles:\n{files}\n"
