"""The steps-versus-quality figures of one run, computed from its output records.

For each step t = 1..T, over all items of the run:

- **reward at step t**: each item's latest draft at step t (an item that stopped earlier keeps
  its last draft), so every row covers the same items and "what if we had stopped at t" reads
  straight off the table;
- **running**: the share of items that made a draft at step t;
- **best here**: the share whose best draft (highest primary reward among usable drafts, ties to
  the later step: the ``best`` selection's rule) is the one of step t;
- **tokens / latency**: what the steps up to t cost per item, cumulated (cached answers count
  their tokens: the figure is the cost of the steps, not of this particular run);
- **batch tokens**: the part of those tokens billed at a Batch API's price (``usage.batch``,
  about half the online price; ``refine run --batch-api``), cumulated the same way.

Then the same reward figures for three selections over whole trajectories: ``best``, ``last``
(the last usable draft) and ``output`` (what the run actually returned). No Prefect here.

Every figure covers every item: an item with no answer under a selection, or no scored draft at
a step (a failed item, an empty or cut-off answer), counts as a failure at the reward's floor
(:func:`flows.eval.curves.score`); only an item the reward does not apply to (no reference) or a
reward without a floor (``loglik``) leaves it out, and ``n`` says so.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

from flows.eval.curves import ItemCurve, latest_at, score, selected
from refine.errors import ConfigError

__all__ = [
    "SELECTIONS",
    "EvalReport",
    "SelectionRow",
    "Spread",
    "StepRow",
    "evaluate",
    "primary_label",
    "reward_labels",
    "spread",
]

SELECTIONS = ("best", "last", "output")
"""The ways of picking each item's answer that the report shows (and --compare accepts)."""


class Spread(BaseModel):
    """Mean and spread of one reward over the items that have a value."""

    n: int
    mean: float | None = None
    sd: float | None = Field(default=None, description="sample standard deviation; 0 for n=1")
    min: float | None = None
    max: float | None = None


def spread(values: Sequence[float]) -> Spread:
    """The Spread of ``values`` (an empty one for no values)."""
    if not values:
        return Spread(n=0)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(
        n=len(values), mean=statistics.fmean(values), sd=sd, min=min(values), max=max(values)
    )


class StepRow(BaseModel):
    """Step t across all items; see the module docstring for what each figure means."""

    step: int
    running: int = Field(description="items that made a draft at this step")
    running_share: float
    fix_drafts: int = Field(description="drafts of this step that were error corrections")
    best_here_share: float
    rewards: dict[str, Spread]
    cum_tokens_mean: float
    cum_latency_s_mean: float
    cum_requests_mean: float = Field(
        default=0.0, description="requests per item up to this step: every candidate counted"
    )
    cum_batch_tokens_mean: float = Field(
        default=0.0,
        description="prompt + completion tokens per item up to this step that were billed at "
        "the batch price (part of cum_tokens_mean)",
    )


class SelectionRow(BaseModel):
    """One way of picking each item's answer from its trajectory, and what it scores."""

    selection: str
    items: int = Field(
        description="items that have an answer under this selection; the others count in "
        "``rewards`` at the reward's floor (a failure), never left out"
    )
    rewards: dict[str, Spread]
    tokens_mean: float
    latency_s_mean: float
    batch_tokens_mean: float = Field(
        default=0.0,
        description="prompt + completion tokens per item billed at the batch price (part of "
        "tokens_mean)",
    )


class EvalReport(BaseModel):
    """Everything ``refine eval`` shows and writes, for one output file."""

    source: str
    items: int
    ok: int
    failed: int
    primary: str | None = Field(description="the reward steering 'best' and the plots")
    reward_labels: list[str]
    max_steps: int
    steps: list[StepRow]
    selections: list[SelectionRow]
    stop_reasons: dict[str, int]
    no_best_draft: int = Field(description="items with no usable, scored draft")


def primary_label(records: Sequence[ItemCurve], wanted: str | None = None) -> str | None:
    """The reward to steer by: ``wanted`` if given, else the first record's primary label, else
    the first label any draft carries; None when no draft has a reward.

    Raises:
        ConfigError: ``wanted`` is a label no draft carries (the error lists those that do).
    """
    labels = reward_labels(records)
    if wanted is not None:
        if wanted not in labels:
            known = ", ".join(labels) or "none: no draft has a reward"
            raise ConfigError(
                f"--reward {wanted!r} is not in these records; their rewards: {known}"
            )
        return wanted
    for record in records:
        if record.reward in labels:
            return record.reward
    return labels[0] if labels else None


def reward_labels(records: Sequence[ItemCurve]) -> list[str]:
    """Every reward label that some draft carries, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for point in record.points:
            seen.update(dict.fromkeys(point.rewards))
    return list(seen)


def evaluate(records: Sequence[ItemCurve], source: str, reward: str | None = None) -> EvalReport:
    """The report for ``records`` (one per item). ``reward`` overrides the primary label."""
    labels = reward_labels(records)
    primary = primary_label(records, reward)
    max_steps = max((p.step for r in records for p in r.points), default=0)
    best_steps = [_best_step(r, primary) for r in records]
    return EvalReport(
        source=source,
        items=len(records),
        ok=sum(r.status == "ok" for r in records),
        failed=sum(r.status == "failed" for r in records),
        primary=primary,
        reward_labels=labels,
        max_steps=max_steps,
        steps=[_step_row(records, t, labels, best_steps) for t in range(1, max_steps + 1)],
        selections=[_selection_row(records, s, labels, primary) for s in SELECTIONS],
        stop_reasons=dict(Counter(r.stop_reason or "none" for r in records).most_common()),
        no_best_draft=sum(step is None for step in best_steps),
    )


def _best_step(record: ItemCurve, primary: str | None) -> int | None:
    if primary is None:
        return None
    best = selected(record, "best", primary)
    return best.step if best is not None and primary in best.rewards else None


def _step_row(
    records: Sequence[ItemCurve], step: int, labels: list[str], best_steps: list[int | None]
) -> StepRow:
    n = len(records)
    values: dict[str, list[float]] = {label: [] for label in labels}
    tokens = latency = requests = batch_tokens = 0.0
    running = fixes = 0
    for record in records:
        here = [p for p in record.points if p.step == step]
        running += bool(here)
        fixes += sum(p.kind == "fix" for p in here)
        latest = latest_at(record.points, step)
        for label in labels:
            value = score(record, latest, label)
            if value is not None:
                values[label].append(value)
        for point in record.points:
            if point.step <= step:
                tokens += point.tokens
                latency += point.latency_s
                requests += point.requests
                batch_tokens += point.batch_tokens
    return StepRow(
        step=step,
        running=running,
        running_share=running / n if n else 0.0,
        fix_drafts=fixes,
        best_here_share=sum(b == step for b in best_steps) / n if n else 0.0,
        rewards={label: spread(v) for label, v in values.items()},
        cum_tokens_mean=tokens / n if n else 0.0,
        cum_latency_s_mean=latency / n if n else 0.0,
        cum_requests_mean=requests / n if n else 0.0,
        cum_batch_tokens_mean=batch_tokens / n if n else 0.0,
    )


def _selection_row(
    records: Sequence[ItemCurve], selection: str, labels: list[str], primary: str | None
) -> SelectionRow:
    values: dict[str, list[float]] = {label: [] for label in labels}
    items = 0
    tokens = latency = batch_tokens = 0.0
    for record in records:
        tokens += record.tokens  # every step was paid for, whichever is picked
        batch_tokens += record.batch_tokens
        latency += record.latency_s
        chosen = selected(record, selection, primary)
        items += chosen is not None
        for label in labels:  # no answer counts as a failure: see flows.eval.curves.score
            value = score(record, chosen, label)
            if value is not None:
                values[label].append(value)
    n = len(records)
    return SelectionRow(
        selection=selection,
        items=items,
        rewards={label: spread(v) for label, v in values.items()},
        tokens_mean=tokens / n if n else 0.0,
        latency_s_mean=latency / n if n else 0.0,
        batch_tokens_mean=batch_tokens / n if n else 0.0,
    )
