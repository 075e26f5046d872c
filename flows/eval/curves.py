"""What ``refine eval`` keeps of each output record: its steps' rewards and costs, no text.

Evaluating needs every item at once (per-step means, the best step of each item, pairing two
runs), but not the drafts' text, which is nearly all of a record's size. Each record is read,
validated as a :class:`~flows.data.records.Trajectory`, reduced to an :class:`ItemCurve` and
dropped, so memory grows with items × steps, not with the output file
(``benchmarks/eval_scale.py`` measures it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.data.output_reader import OUTPUT_HINT, RecordReader
from flows.data.records import Draft, Trajectory
from flows.loop.select import select_draft
from postprocess.rewards import REWARD_FLOORS
from refine.errors import FieldProblem, InputError

__all__ = ["ItemCurve", "StepPoint", "latest_at", "read_curves", "score", "selected"]


@dataclass(frozen=True, slots=True)
class StepPoint:
    """One draft without its text: its step, whether it may be the output, rewards and cost.

    ``tokens`` and ``batch_tokens`` count prompt + completion tokens; ``batch_tokens`` is the
    part of ``tokens`` billed at a Batch API's price (``usage.batch``, about half the online
    price), 0 for a step sent online.
    """

    step: int
    kind: str
    usable: bool
    rewards: Mapping[str, float]
    tokens: int
    latency_s: float
    requests: int = 1  # every request of the step: candidates, fixes' repeats, critique, judge
    batch_tokens: int = 0  # of prompt + completion tokens, those billed at the batch price

    @classmethod
    def of(cls, draft: Draft) -> StepPoint:
        """Tokens are prompt + completion and latency the step's own plus its side requests'
        (critique, judge); cached answers count their tokens, as the cost of the step.
        Batch tokens are counted request by request (:meth:`Draft.requests`), as a sum of
        usages does not carry the batch flag."""
        usage = draft.total_usage
        return cls(
            step=draft.step,
            kind=draft.kind,
            usable=draft.usable,
            rewards=dict(draft.rewards),
            tokens=usage.prompt_tokens + usage.completion_tokens,
            latency_s=draft.latency_s + sum(side.latency_s for side in draft.side_requests),
            requests=draft.request_count(),
            batch_tokens=sum(usage.tokens for _, usage in draft.requests() if usage.batch),
        )


@dataclass(frozen=True, slots=True)
class ItemCurve:
    """One item's trajectory as evaluation sees it."""

    id: str
    status: str
    stop_reason: str | None
    selected_step: int | None
    reward: str | None
    points: tuple[StepPoint, ...]
    unavailable: frozenset[str] = frozenset()
    """Reward labels the run could not compute for this item (no reference, no tests)."""

    @classmethod
    def of(cls, record: Trajectory) -> ItemCurve:
        notes = [note for draft in record.drafts for note in draft.reward_notes]
        return cls(
            id=record.id,
            status=record.status,
            stop_reason=record.stop_reason,
            selected_step=record.selected_step,
            reward=record.reward,
            points=tuple(StepPoint.of(draft) for draft in record.drafts),
            unavailable=frozenset(
                label
                for note in notes
                if note.startswith("reward ") and " unavailable: " in note
                for label in [note.removeprefix("reward ").split(" unavailable: ", 1)[0]]
            ),
        )

    @property
    def tokens(self) -> int:
        return sum(point.tokens for point in self.points)

    @property
    def batch_tokens(self) -> int:
        """Prompt + completion tokens of the item's requests billed at the batch price."""
        return sum(point.batch_tokens for point in self.points)

    @property
    def latency_s(self) -> float:
        return sum(point.latency_s for point in self.points)


def read_curves(
    path: Path, rescore: Callable[[Trajectory], Trajectory] | None = None
) -> list[ItemCurve]:
    """Every item of ``path`` as a curve, each id once by its latest record (the rule of
    :mod:`flows.data.output_reader`: a record ``refine run --retry-failed`` appended supersedes
    the failed one before it).
    ``rescore`` may add rewards to each record first (:class:`flows.eval.rescore.Rescorer`).

    Raises:
        InputError: the file is missing or empty, or a complete line is not a record.
    """
    curves = [
        ItemCurve.of(rescore(record) if rescore else record) for _, record in RecordReader(path)
    ]
    if not curves:
        raise InputError(
            path,
            [FieldProblem(0, None, "no complete records yet")],
            hint=OUTPUT_HINT,
        )
    return curves


def latest_at(points: Sequence[StepPoint], step: int) -> StepPoint | None:
    """The item's latest draft at ``step``: the one of that step, or its last one before."""
    found = None
    for point in points:
        if point.step > step:
            break
        found = point
    return found


def score(curve: ItemCurve, point: StepPoint | None, label: str) -> float | None:
    """What ``point`` (the item's draft picked by a selection or a step; None: none) scores on
    ``label``, counting a missing answer as a failure.

    A finite value is itself. No draft, a failed item or a draft the run could not score (empty,
    cut off) gets the reward's floor (:data:`postprocess.rewards.REWARD_FLOORS`: 0 for every
    bounded built-in), so a mean over a run never leaves its failures out. None, meaning "leave
    the item out", only where the reward is unavailable for the item (no reference) or has no
    floor (``loglik``, a user reward).
    """
    value = point.rewards.get(label) if point is not None else None
    if value is not None and math.isfinite(value):
        return float(value)
    if label in curve.unavailable:
        return None
    return REWARD_FLOORS.get(label.split("(", 1)[0])


def selected(curve: ItemCurve, selection: str, primary: str | None) -> StepPoint | None:
    """The draft ``selection`` picks (``output``: the one the run returned), by the rules of
    :func:`flows.loop.select.select_draft`."""
    if selection == "output":
        return next((p for p in curve.points if p.step == curve.selected_step), None)
    return select_draft(curve.points, "best" if selection == "best" else "last", primary)
