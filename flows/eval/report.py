"""Showing and saving evaluations: rich tables for the terminal, rows for CSV and Prefect
table artifacts, and the report folder (JSON, CSV and PNG, each written atomically)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from rich.table import Table

from flows.eval.compare import CompareReport
from flows.eval.frontier import FrontierReport
from flows.eval.plots import compare_plot, frontier_plot, report_plots
from flows.eval.stats import EvalReport, Spread
from refine.atomic_file import write_bytes_atomic

__all__ = [
    "compare_rows",
    "compare_table",
    "eval_rows",
    "eval_table",
    "frontier_rows",
    "frontier_table",
    "write_compare_files",
    "write_eval_files",
    "write_frontier_files",
]


def _num(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _spread_text(spread: Spread) -> str:
    if spread.mean is None:
        return "-"
    return f"{spread.mean:.3f}±{spread.sd or 0.0:.3f}"


def eval_rows(report: EvalReport) -> list[dict[str, Any]]:
    """One flat row per step, then one per selection: the CSV and the table artifact.

    Tokens are prompt + completion tokens per item; "batch tokens" the part of them billed at
    a Batch API's price (0 for a run sent online)."""
    rows: list[dict[str, Any]] = []
    for step in report.steps:
        row: dict[str, Any] = {
            "row": f"step {step.step}",
            "items": step.running,
            "running share": _num(step.running_share),
            "best here share": _num(step.best_here_share),
            "fix drafts": step.fix_drafts,
            "tokens per item (cum)": _num(step.cum_tokens_mean, 1),
            "batch tokens per item (cum)": _num(step.cum_batch_tokens_mean, 1),
            "requests per item (cum)": _num(step.cum_requests_mean, 2),
            "latency s per item (cum)": _num(step.cum_latency_s_mean, 3),
        }
        rows.append(row | _reward_columns(step.rewards))
    for selection in report.selections:
        row = {
            "row": selection.selection,
            "items": selection.items,
            "running share": None,
            "best here share": None,
            "fix drafts": None,
            "tokens per item (cum)": _num(selection.tokens_mean, 1),
            "batch tokens per item (cum)": _num(selection.batch_tokens_mean, 1),
            "requests per item (cum)": None,
            "latency s per item (cum)": _num(selection.latency_s_mean, 3),
        }
        rows.append(row | _reward_columns(selection.rewards))
    return rows


def _reward_columns(rewards: dict[str, Spread]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for label, spread in rewards.items():
        columns[f"{label} n"] = spread.n
        columns[f"{label} mean"] = _num(spread.mean)
        columns[f"{label} sd"] = _num(spread.sd)
        columns[f"{label} min"] = _num(spread.min)
        columns[f"{label} max"] = _num(spread.max)
    return columns


def eval_table(report: EvalReport) -> Table:
    """The terminal view: steps, then the best/last/output selections. The "batch tokens"
    column (tokens per item billed at the batch price) is shown only when some step has any."""
    title = (
        f"refine eval: {report.source}: {report.items} items "
        f"({report.ok} ok, {report.failed} failed)"
    )
    batch = _has_batch_tokens(report)
    table = Table(title=title, caption=_caption(report, batch))
    for column in (
        "",
        "running",
        "best here",
        *report.reward_labels,
        "tokens",
        *(["batch tokens"] if batch else []),
        "requests",
        "latency",
    ):
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for step in report.steps:
        table.add_row(
            f"step {step.step}",
            f"{step.running_share:.0%}",
            f"{step.best_here_share:.0%}",
            *(_spread_text(step.rewards[label]) for label in report.reward_labels),
            f"{step.cum_tokens_mean:,.0f}",
            *([f"{step.cum_batch_tokens_mean:,.0f}"] if batch else []),
            f"{step.cum_requests_mean:.2f}",
            f"{step.cum_latency_s_mean:.2f} s",
        )
    table.add_section()
    for selection in report.selections:
        table.add_row(
            selection.selection,
            f"{selection.items} items",
            "",
            *(_spread_text(selection.rewards[label]) for label in report.reward_labels),
            f"{selection.tokens_mean:,.0f}",
            *([f"{selection.batch_tokens_mean:,.0f}"] if batch else []),
            "",
            f"{selection.latency_s_mean:.2f} s",
        )
    return table


def _has_batch_tokens(report: EvalReport) -> bool:
    return any(step.cum_batch_tokens_mean > 0 for step in report.steps)


def _caption(report: EvalReport, batch: bool = False) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in report.stop_reasons.items()) or "-"
    rewards = (
        f"primary reward: {report.primary}; rewards are mean ± sd of each item's latest draft"
        if report.primary
        else "no draft has a reward: run with --reward on a dataset with references"
    )
    cost = "tokens, batch tokens (billed at the batch price)" if batch else "tokens"
    return (
        f"{rewards}; {cost}, requests and latency cumulate per item (every best-of-N "
        f"candidate counted)\nstop reasons: {reasons}"
    )


def compare_rows(report: CompareReport) -> list[dict[str, Any]]:
    """One row per step, then the final selection's row."""
    rows: list[dict[str, Any]] = [
        {
            "row": f"step {step.step}",
            "pairs": step.pairs,
            "A mean": _num(step.a_mean),
            "B mean": _num(step.b_mean),
            "B - A": _num(step.diff),
            "interval low": None,
            "interval high": None,
        }
        for step in report.steps
    ]
    interval = report.interval
    rows.append(
        {
            "row": f"final ({report.selection})",
            "pairs": report.final_pairs,
            "A mean": _num(report.final_a.mean),
            "B mean": _num(report.final_b.mean),
            "B - A": _num(interval.mean_diff if interval else None),
            "interval low": _num(interval.low if interval else None),
            "interval high": _num(interval.high if interval else None),
        }
    )
    return rows


def compare_table(report: CompareReport) -> Table:
    """The terminal view of a comparison, with the verdict as the caption."""
    table = Table(
        title=f"refine eval --compare ({report.reward}): A = {report.a}, B = {report.b}",
        caption=(
            f"{report.verdict}\n{report.paired} paired items (only in A: {report.only_a}, "
            f"only in B: {report.only_b}); ok A {report.ok_a}, B {report.ok_b}; "
            f"tokens per item A {report.tokens_a_mean:,.0f}, B {report.tokens_b_mean:,.0f}"
        ),
    )
    for column in ("", "pairs", "A", "B", "B − A", f"{_level(report)} interval"):
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    for row in compare_rows(report):
        low, high = row["interval low"], row["interval high"]
        table.add_row(
            row["row"],
            str(row["pairs"]),
            *("-" if row[k] is None else f"{row[k]:.4f}" for k in ("A mean", "B mean")),
            "-" if row["B - A"] is None else f"{row['B - A']:+.4f}",
            "" if low is None else f"{low:+.4f} .. {high:+.4f}",
        )
    return table


def _level(report: CompareReport) -> str:
    return f"{report.interval.level:.0%}" if report.interval else ""


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_eval_files(report: EvalReport, folder: Path) -> list[Path]:
    """``eval.json``, ``eval.csv`` and the PNG plots in ``folder``; returns the paths."""
    files = {
        "eval.json": report.model_dump_json(indent=2).encode("utf-8"),
        "eval.csv": _csv_bytes(eval_rows(report)),
        **report_plots(report),
    }
    return _write_all(folder, files)


def write_compare_files(report: CompareReport, folder: Path, suffix: str = "") -> list[Path]:
    """``compare.json``, ``compare.csv`` and ``compare_per_step.png`` in ``folder``; with a
    ``suffix`` (``-2``: the second run against the first, of three or more) in each name."""
    files = {
        f"compare{suffix}.json": report.model_dump_json(indent=2).encode("utf-8"),
        f"compare{suffix}.csv": _csv_bytes(compare_rows(report)),
        f"compare_per_step{suffix}.png": compare_plot(report),
    }
    return _write_all(folder, files)


def frontier_rows(report: FrontierReport) -> list[dict[str, Any]]:
    """One row per run: its returned output's reward and tokens, its interval against the
    first run, and whether it is on the frontier."""
    rows = []
    for strategy in report.strategies:
        interval = strategy.vs_first
        rows.append(
            {
                "run": strategy.name,
                "items": report.items,
                "tokens per item": round(strategy.tokens_mean, 1),
                f"{report.reward}": _num(strategy.reward_mean),
                "minus the first": _num(interval.mean_diff if interval else None),
                "interval low": _num(interval.low if interval else None),
                "interval high": _num(interval.high if interval else None),
                "on the frontier": strategy.on_frontier,
            }
        )
    return rows


def frontier_table(report: FrontierReport) -> Table:
    """The terminal view of the frontier: one row per run."""
    table = Table(
        title=f"Cost against quality ({report.reward}, {report.selection}): which run wins "
        "at its tokens",
        caption=f"{report.items} items every run holds"
        + (f" ({report.left_out} of the first run's left out)" if report.left_out else "")
        + "; intervals: paired bootstrap against the first run; * on the frontier",
    )
    for column in ("run", "tokens / item", report.reward, "− first", "interval", ""):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in frontier_rows(report):
        low, high = row["interval low"], row["interval high"]
        table.add_row(
            str(row["run"]),
            f"{row['tokens per item']:,.0f}",
            f"{row[report.reward]:.4f}",
            "" if row["minus the first"] is None else f"{row['minus the first']:+.4f}",
            "" if low is None else f"{low:+.4f} .. {high:+.4f}",
            "*" if row["on the frontier"] else "",
        )
    return table


def write_frontier_files(report: FrontierReport, folder: Path) -> list[Path]:
    """``frontier.json``, ``frontier.csv`` and ``frontier.png`` in ``folder``."""
    files = {
        "frontier.json": report.model_dump_json(indent=2).encode("utf-8"),
        "frontier.csv": _csv_bytes(frontier_rows(report)),
        "frontier.png": frontier_plot(report),
    }
    return _write_all(folder, files)


def _write_all(folder: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for name, data in files.items():  # all rendered before the first is written
        path = folder / name
        write_bytes_atomic(path, data)
        paths.append(path)
    return paths
