"""PNG plots of an evaluation: reward per step, the cost-quality curve, and the stop reasons.

Figures are built as :class:`matplotlib.figure.Figure` objects and rendered by the Agg backend
straight to bytes: no pyplot, so no global figure state and no display is ever needed.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from flows.eval.compare import CompareReport
from flows.eval.frontier import FrontierReport
from flows.eval.stats import EvalReport

__all__ = [
    "compare_plot",
    "cost_quality_plot",
    "frontier_plot",
    "report_plots",
    "reward_plot",
    "stop_plot",
]

_DPI = 110


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def reward_plot(report: EvalReport) -> bytes:
    """Mean of each reward per step, with a ±1 sd band; dashed: the best draft's mean, dotted:
    the run's output's (the primary reward)."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    steps = [row.step for row in report.steps]
    if not any(row.rewards[label].n for row in report.steps for label in report.reward_labels):
        ax.text(0.5, 0.5, "no reward recorded", ha="center", va="center", transform=ax.transAxes)
    for label in report.reward_labels:
        rows = [(r.step, r.rewards[label]) for r in report.steps if r.rewards[label].n]
        if not rows:
            continue
        xs = [step for step, _ in rows]
        means = [s.mean or 0.0 for _, s in rows]
        sds = [s.sd or 0.0 for _, s in rows]
        (line,) = ax.plot(xs, means, marker="o", label=label)
        ax.fill_between(
            xs,
            [m - d for m, d in zip(means, sds, strict=True)],
            [m + d for m, d in zip(means, sds, strict=True)],
            alpha=0.15,
            color=line.get_color(),
        )
    if report.primary is not None:
        for row, style in zip(report.selections, ("--", None, ":"), strict=True):
            value = row.rewards.get(report.primary)
            if style is not None and value is not None and value.mean is not None:
                ax.axhline(
                    value.mean,
                    linestyle=style,
                    color="black" if row.selection == "best" else "gray",
                    linewidth=1,
                    label=f"{report.primary}, {row.selection} draft: {value.mean:.3f}",
                )
    ax.set_xticks(steps or [1])
    ax.set_xlim(0.8, max(steps, default=1) + 0.2)
    ax.set_xlabel("step t")
    ax.set_ylabel("reward (mean ± 1 sd over items)")
    ax.set_title(f"Reward per step: {Path(report.source).name}", fontsize=10)
    ax.grid(alpha=0.3)
    if report.reward_labels:
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def cost_quality_plot(report: EvalReport) -> bytes:
    """Primary reward against cumulative tokens per item: what each extra step buys."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    label = report.primary
    points: list[tuple[float, float, int]] = []
    for row in report.steps:
        mean = row.rewards[label].mean if label is not None else None
        if mean is not None:
            points.append((row.cum_tokens_mean, mean, row.step))
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label="stop at step t")
        for tokens, mean, step in points:
            ax.annotate(
                f"t={step}", (tokens, mean), xytext=(4, 4), textcoords="offset points", fontsize=8
            )
        best = next(s for s in report.selections if s.selection == "best")
        best_mean = best.rewards[label].mean if label is not None else None
        if best_mean is not None:
            ax.scatter(
                [best.tokens_mean],
                [best_mean],
                marker="*",
                s=120,
                color="black",
                zorder=3,
                label="best draft (all steps paid)",
            )
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no reward recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("tokens per item, cumulative (prompt + completion)")
    ax.set_ylabel(f"mean {label or 'reward'}")
    ax.set_title(f"Cost against quality: {Path(report.source).name}", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def stop_plot(report: EvalReport) -> bytes:
    """How many items stopped for each reason."""
    fig = Figure(figsize=(6.4, 0.6 + 0.45 * max(1, len(report.stop_reasons))))
    ax = fig.add_subplot()
    reasons = list(report.stop_reasons)[::-1]
    counts = [report.stop_reasons[r] for r in reasons]
    bars = ax.barh(reasons, counts, color="#4c72b0")
    ax.bar_label(bars, fontsize=8, padding=3)
    ax.set_xlabel("items")
    ax.set_title(f"Stop reasons: {Path(report.source).name} ({report.items} items)", fontsize=10)
    ax.margins(x=0.15)
    return _png(fig)


def compare_plot(report: CompareReport) -> bytes:
    """A's and B's mean reward per step over the paired items."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    rows = [row for row in report.steps if row.pairs]
    xs = [row.step for row in rows]
    ax.plot(xs, [row.a_mean or 0.0 for row in rows], marker="o", label=f"A: {report.a}")
    ax.plot(xs, [row.b_mean or 0.0 for row in rows], marker="s", label=f"B: {report.b}")
    ax.set_xticks(xs or [1])
    ax.set_xlabel("step t")
    ax.set_ylabel(f"mean {report.reward} over {report.paired} paired items")
    ax.set_title(report.verdict, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def frontier_plot(report: FrontierReport) -> bytes:
    """Every run's returned-output reward against its tokens per item, on one plane: a thin
    line through its steps (stopping at step t), a marker at what it returned, labelled with
    its paired bootstrap interval against the first run; dashed: the frontier."""
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.add_subplot()
    for index, strategy in enumerate(report.strategies):
        xs = [row.tokens_mean for row in strategy.steps]
        ys = [row.reward_mean for row in strategy.steps]
        (line,) = ax.plot(xs, ys, linewidth=0.8, alpha=0.6, marker=".")
        interval = strategy.vs_first
        label = f"{_short(strategy.name)}: {strategy.reward_mean:.3f}"
        if interval is not None:
            label += (
                f" ({interval.mean_diff:+.3f} vs the first, {interval.level:.0%} "
                f"{interval.low:+.3f} .. {interval.high:+.3f})"
            )
        ax.scatter(
            [strategy.tokens_mean],
            [strategy.reward_mean],
            s=90,
            marker="os^Dvp*"[index % 7],
            color=line.get_color(),
            edgecolors="black" if strategy.on_frontier else "none",
            zorder=3,
            label=label,
        )
    best = sorted((s for s in report.strategies if s.on_frontier), key=lambda s: s.tokens_mean)
    if len(best) > 1:
        ax.plot(
            [s.tokens_mean for s in best],
            [s.reward_mean for s in best],
            linestyle="--",
            color="black",
            linewidth=1,
            label="frontier",
        )
    ax.set_xlabel("tokens per item, every request (prompt + completion)")
    ax.set_ylabel(f"mean {report.reward} of the returned draft")
    ax.set_title(
        f"Cost against quality, {report.items} items every run holds (black edge: on the frontier)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14))  # below the plane
    return _png(fig)


def _short(name: str) -> str:
    """A run's name for a legend: its file, under its folder's name (``b-run/out.jsonl``)."""
    path = Path(name)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def report_plots(report: EvalReport) -> dict[str, bytes]:
    """File name -> PNG bytes for every plot of ``report``."""
    return {
        "reward_per_step.png": reward_plot(report),
        "cost_quality.png": cost_quality_plot(report),
        "stop_reasons.png": stop_plot(report),
    }
