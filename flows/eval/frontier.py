"""The cost–quality frontier of several runs: at the same tokens per item, which strategy wins?

Each run compared by ``refine eval --compare A B [C ...]`` is a strategy (refine for T steps,
best-of-N, both, another model or template). For each, on the items every run holds, its point
is the mean reward of the draft it returned against the mean tokens per item it spent (every
request: candidates, fixes, critiques, judges), and its curve the same at each step t (stopping
there: the item's latest draft at t, tokens spent up to t). Every run after the first gets a
paired bootstrap interval on its difference from the first (A), as ``--compare`` does for two.
A point is on the frontier when no other run reaches at least its reward for at most its
tokens, better in one of the two. Olausson et al. ("Is Self-Repair a Silver Bullet for Code
Generation?", ICLR 2024) ask this question of repair against sampling; this answers it for a
user's own data.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from flows.eval.compare import BootstrapInterval, paired_bootstrap
from flows.eval.curves import ItemCurve, latest_at, score, selected

__all__ = ["FrontierReport", "StepCost", "Strategy", "frontier"]


class StepCost(BaseModel):
    """A strategy stopped at step t: mean reward and mean cumulative tokens per item."""

    step: int
    tokens_mean: float
    reward_mean: float


class Strategy(BaseModel):
    """One run as a point on the plane: what it returned and what it cost, per item."""

    name: str
    tokens_mean: float = Field(description="every request of the item, mean over items")
    reward_mean: float = Field(description="the returned draft's reward, mean over items")
    steps: list[StepCost]
    vs_first: BootstrapInterval | None = Field(
        default=None, description="paired bootstrap on this run minus the first; None for it"
    )
    on_frontier: bool = False


class FrontierReport(BaseModel):
    """What ``refine eval --compare`` writes as ``frontier.json`` and plots."""

    reward: str
    selection: str
    items: int = Field(description="items every run holds with a value of the reward")
    left_out: int = Field(description="items of the first run some other run lacks a value for")
    strategies: list[Strategy]


def frontier(
    runs: Sequence[tuple[str, Sequence[ItemCurve]]],
    reward: str,
    *,
    selection: str = "output",
    resamples: int = 10_000,
    seed: int = 0,
) -> FrontierReport:
    """The frontier of ``runs`` (name, curves; the first is the baseline) on ``reward``.

    Items are those every run holds with a value of the final reward (a failed item counts at
    the reward's floor, as in :func:`flows.eval.curves.score`). Raises ValueError when fewer
    than two runs are given.
    """
    if len(runs) < 2:
        raise ValueError("a frontier compares two runs or more")
    by_run = [{curve.id: curve for curve in curves} for _, curves in runs]
    finals = [
        {
            i: v
            for i, c in by_id.items()
            if (v := score(c, selected(c, selection, reward), reward)) is not None
        }
        for by_id in by_run
    ]
    shared = [i for i in finals[0] if all(i in f for f in finals[1:])]
    strategies = []
    for (name, _), by_id, final in zip(runs, by_run, finals, strict=True):
        curves = [by_id[i] for i in shared]
        n = len(curves) or 1
        strategies.append(
            Strategy(
                name=name,
                tokens_mean=sum(c.tokens for c in curves) / n,
                reward_mean=sum(final[i] for i in shared) / n,
                steps=_steps(curves, reward),
            )
        )
    for index, final in enumerate(finals[1:], start=1):
        if shared:
            diffs = [final[i] - finals[0][i] for i in shared]
            strategies[index].vs_first = paired_bootstrap(diffs, resamples=resamples, seed=seed)
    for strategy in strategies:
        strategy.on_frontier = not any(_dominates(other, strategy) for other in strategies)
    return FrontierReport(
        reward=reward,
        selection=selection,
        items=len(shared),
        left_out=len(by_run[0]) - len(shared),
        strategies=strategies,
    )


def _steps(curves: Sequence[ItemCurve], reward: str) -> list[StepCost]:
    last = max((p.step for c in curves for p in c.points), default=0)
    rows = []
    for step in range(1, last + 1):
        values = [score(c, latest_at(c.points, step), reward) for c in curves]
        kept = [v for v in values if v is not None]
        if not kept:
            continue
        tokens = [sum(p.tokens for p in c.points if p.step <= step) for c in curves]
        rows.append(
            StepCost(
                step=step,
                tokens_mean=sum(tokens) / len(tokens),
                reward_mean=sum(kept) / len(kept),
            )
        )
    return rows


def _dominates(a: Strategy, b: Strategy) -> bool:
    """Whether ``a`` gets at least ``b``'s reward for at most its tokens, better in one."""
    return (
        a.tokens_mean <= b.tokens_mean
        and a.reward_mean >= b.reward_mean
        and (a.tokens_mean < b.tokens_mean or a.reward_mean > b.reward_mean)
    )
