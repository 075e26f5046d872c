"""Two runs on the same items, side by side: is B better than A, and is the gap more than noise?

Items are paired by id. Per step the two runs' rewards at step t (each item's latest draft,
as in :mod:`flows.eval.stats`) are compared over the items both have a value for; the final
reward (the draft each run's selection gives) gets a paired bootstrap interval on the mean
difference B − A, so swapping a template or a model is a measured decision, not a hunch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from flows.eval.curves import ItemCurve, latest_at, score, selected
from flows.eval.stats import Spread, primary_label, reward_labels, spread
from refine.errors import ConfigError

__all__ = ["BootstrapInterval", "CompareReport", "StepDiff", "compare_runs", "paired_bootstrap"]


class StepDiff(BaseModel):
    """Mean reward at step t in A and in B over the items both have a value for."""

    step: int
    pairs: int
    a_mean: float | None = None
    b_mean: float | None = None
    diff: float | None = Field(default=None, description="B − A")


class BootstrapInterval(BaseModel):
    """A percentile interval on the mean paired difference, from resampling the items."""

    mean_diff: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int
    share_b_better: float = Field(description="share of resamples whose mean difference is > 0")


class CompareReport(BaseModel):
    """Everything ``refine eval --compare`` shows and writes."""

    a: str
    b: str
    reward: str
    selection: str
    paired: int
    only_a: int
    only_b: int
    ok_a: int
    ok_b: int
    steps: list[StepDiff]
    final_a: Spread
    final_b: Spread
    final_pairs: int = Field(description="pairs where both runs' selected drafts have the reward")
    interval: BootstrapInterval | None
    tokens_a_mean: float
    tokens_b_mean: float
    verdict: str


def paired_bootstrap(
    diffs: Sequence[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> BootstrapInterval:
    """Resample the paired differences with replacement; percentile interval of their mean."""
    values = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    batch = max(1, 2_000_000 // max(1, len(values)))  # bounded memory for large runs
    for start in range(0, resamples, batch):
        stop = min(resamples, start + batch)
        picks = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return BootstrapInterval(
        mean_diff=float(values.mean()),
        low=float(low),
        high=float(high),
        level=level,
        resamples=resamples,
        seed=seed,
        share_b_better=float((means > 0).mean()),
    )


def compare_runs(
    a: Sequence[ItemCurve],
    b: Sequence[ItemCurve],
    names: tuple[str, str],
    *,
    reward: str | None = None,
    selection: str = "output",
    resamples: int = 10_000,
    seed: int = 0,
) -> CompareReport:
    """Compare run B against run A on the items they share (see the module docstring).

    Raises:
        ConfigError: the runs share no item, or no reward both of them carry.
    """
    by_id_b = {record.id: record for record in b}
    pairs = [(ra, by_id_b[ra.id]) for ra in a if ra.id in by_id_b]
    if not pairs:
        raise ConfigError(f"{names[0]} and {names[1]} share no item id: nothing to compare")
    label = _shared_reward(a, b, names, reward)
    max_step = max((p.step for r in [*a, *b] for p in r.points), default=0)
    finals = [(_final(ra, selection, label), _final(rb, selection, label)) for ra, rb in pairs]
    both = [(fa, fb) for fa, fb in finals if fa is not None and fb is not None]
    interval = (
        paired_bootstrap([fb - fa for fa, fb in both], resamples=resamples, seed=seed)
        if both
        else None
    )
    n = len(pairs)
    return CompareReport(
        a=names[0],
        b=names[1],
        reward=label,
        selection=selection,
        paired=n,
        only_a=len(a) - n,
        only_b=len(b) - n,
        ok_a=sum(ra.status == "ok" for ra, _ in pairs),
        ok_b=sum(rb.status == "ok" for _, rb in pairs),
        steps=[_step_diff(pairs, t, label) for t in range(1, max_step + 1)],
        final_a=spread([fa for fa, _ in both]),
        final_b=spread([fb for _, fb in both]),
        final_pairs=len(both),
        interval=interval,
        tokens_a_mean=sum(ra.tokens for ra, _ in pairs) / n,
        tokens_b_mean=sum(rb.tokens for _, rb in pairs) / n,
        verdict=_verdict(interval, names),
    )


def _shared_reward(
    a: Sequence[ItemCurve], b: Sequence[ItemCurve], names: tuple[str, str], wanted: str | None
) -> str:
    """The reward both runs are compared on: ``wanted``, else A's primary; B must carry it."""
    label = primary_label(a, wanted)
    if label is None:
        raise ConfigError(
            f"no reward to compare: no draft of {names[0]} has one (run on a dataset with "
            "references, or pass --input DATASET --score SPEC)"
        )
    carried = reward_labels(b)
    if label not in carried:
        raise ConfigError(
            f"{names[1]} has no {label!r} reward to compare with {names[0]}'s; its rewards: "
            f"{', '.join(carried) or 'none'} (choose one both carry with --reward, or score "
            "both with --input DATASET --score SPEC)"
        )
    return label


def _final(record: ItemCurve, selection: str, label: str) -> float | None:
    return score(record, selected(record, selection, label), label)


def _step_diff(pairs: list[tuple[ItemCurve, ItemCurve]], step: int, label: str) -> StepDiff:
    values: list[tuple[float, float]] = []
    for ra, rb in pairs:
        va = score(ra, latest_at(ra.points, step), label)
        vb = score(rb, latest_at(rb.points, step), label)
        if va is not None and vb is not None:
            values.append((va, vb))
    if not values:
        return StepDiff(step=step, pairs=0)
    a_mean = sum(v[0] for v in values) / len(values)
    b_mean = sum(v[1] for v in values) / len(values)
    return StepDiff(
        step=step, pairs=len(values), a_mean=a_mean, b_mean=b_mean, diff=b_mean - a_mean
    )


def _verdict(interval: BootstrapInterval | None, names: tuple[str, str]) -> str:
    if interval is None:
        return "no pair has a final reward in both runs: no verdict"
    pct = f"{interval.level:.0%}"
    span = f"{interval.mean_diff:+.4f} ({pct} interval {interval.low:+.4f} .. {interval.high:+.4f})"
    if interval.low > 0:
        return f"B ({names[1]}) is better: {span}"
    if interval.high < 0:
        return f"A ({names[0]}) is better: {span}"
    return f"no clear difference: {span}"
