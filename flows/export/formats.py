"""The lines ``refine export`` writes, built from one output record at a time; no I/O here.

Three views of the same trajectories, each a pydantic model with ``extra="forbid"`` so a
consumer can validate what it reads:

- :class:`TrajectoryLine`: one line per draft, the MDP view (state, action, reward, return).
- :class:`SftLine`: one chat per item, the step-1 prompt answered by the best usable draft.
- :class:`PreferenceLine`: chosen/rejected pairs of one item's drafts (TRL's conversational
  preference format).

References are kept out of every line unless the caller asks for them (``with_reference``):
the builders take the reference separately and the writers drop the field otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.data.records import Draft, DraftKind, StopReason, Trajectory
from flows.loop.select import select_draft

__all__ = [
    "ChatMessage",
    "ExportFormat",
    "PairMode",
    "PreferenceLine",
    "SftLine",
    "Skip",
    "State",
    "TrajectoryLine",
    "preference_lines",
    "primary_reward",
    "sft_line",
    "trajectory_lines",
]

ExportFormat = Literal["trajectory", "sft", "preference"]
PairMode = Literal["best-vs-rest", "all"]


class State(BaseModel):
    """What the policy saw before a step: x and the earlier drafts with their feedback."""

    model_config = ConfigDict(extra="forbid")

    x: dict[str, Any] | None = Field(description="the dataset row without id and reference")
    prior_steps: list[int]
    prior_drafts: list[str]
    problems: list[str] = Field(description="the previous draft's problems")
    feedback: str | None = Field(description="the previous draft's critique")
    reference: Any = None


class TrajectoryLine(BaseModel):
    """One step of one item: state, action (the draft), rewards and the return from here."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    id: str
    step: int
    kind: DraftKind
    state: State
    action: str
    rewards: dict[str, float]
    reward: float | None = Field(description="the primary reward of this draft")
    problems: list[str]
    done: bool = Field(description="true on the item's last draft")
    return_: float | None = Field(  # "return" is a Python keyword
        validation_alias="return",
        serialization_alias="return",
        description="Σ primary reward over all the item's drafts",
    )
    return_to_go: float | None = Field(description="Σ primary reward from this step on")
    stop_reason: StopReason | None
    status: Literal["ok", "failed"]
    tokens: int = Field(description="prompt + completion tokens of the step and side requests")


class ChatMessage(BaseModel):
    """One chat message, as OpenAI-style chat datasets hold it."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SftLine(BaseModel):
    """A supervised fine-tuning example: the step-1 prompt and the item's best usable draft."""

    model_config = ConfigDict(extra="forbid")

    id: str
    messages: list[ChatMessage]
    reward: float | None
    step: int
    reference: Any = None


class PreferenceLine(BaseModel):
    """A chosen/rejected pair of one item's drafts, the chosen one scoring strictly higher."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: list[ChatMessage]
    chosen: list[ChatMessage]
    rejected: list[ChatMessage]
    chosen_reward: float
    rejected_reward: float
    chosen_step: int
    rejected_step: int
    reference: Any = None


@dataclass(frozen=True)
class Skip:
    """Why an item gave no line; the command counts these by reason."""

    reason: str


def primary_reward(draft: Draft, label: str | None) -> float | None:
    """The draft's value of the primary reward, None when it has none."""
    return draft.rewards.get(label) if label else None


def trajectory_lines(
    record: Trajectory, label: str | None, x: dict[str, Any] | None, reference: Any = None
) -> Iterator[TrajectoryLine]:
    """One line per draft; returns are exact sums (``math.fsum``) of the primary reward over
    the drafts that have it, None when no draft of the item has it."""
    values = [primary_reward(draft, label) for draft in record.drafts]
    scored = any(value is not None for value in values)
    total = math.fsum(v for v in values if v is not None) if scored else None
    for index, draft in enumerate(record.drafts):
        earlier = record.drafts[:index]
        previous = earlier[-1] if earlier else None
        to_go = math.fsum(v for v in values[index:] if v is not None) if scored else None
        yield TrajectoryLine(
            id=record.id,
            step=draft.step,
            kind=draft.kind,
            state=State(
                x=x,
                prior_steps=[d.step for d in earlier],
                prior_drafts=[d.text for d in earlier],
                problems=list(previous.problems) if previous else [],
                feedback=previous.critique if previous else None,
                reference=reference,
            ),
            action=draft.text,
            rewards=dict(draft.rewards),
            reward=values[index],
            problems=list(draft.problems),
            done=index == len(record.drafts) - 1,
            return_=total,
            return_to_go=to_go,
            stop_reason=record.stop_reason,
            status=record.status,
            tokens=draft.total_usage.tokens,
        )


def _passes(value: float | None, min_reward: float | None) -> Skip | None:
    """A skip when ``min_reward`` is set and ``value`` is missing or below it."""
    if min_reward is None:
        return None
    if value is None:
        return Skip("no primary reward (--min-reward set)")
    return None if value >= min_reward else Skip("below --min-reward")


def sft_line(
    record: Trajectory,
    label: str | None,
    prompt: Sequence[ChatMessage],
    min_reward: float | None = None,
    reference: Any = None,
) -> SftLine | Skip:
    """The step-1 prompt answered by the best usable draft (as ``select = "best"`` picks it)."""
    best = select_draft(record.drafts, "best", label)
    if best is None:
        return Skip(f"no usable draft ({record.status})")
    value = primary_reward(best, label)
    if skip := _passes(value, min_reward):
        return skip
    answer = ChatMessage(role="assistant", content=best.text)
    return SftLine(
        id=record.id,
        messages=[*prompt, answer],
        reward=value,
        step=best.step,
        reference=reference,
    )


def _beats(chosen: Draft, rejected: Draft, label: str, margin: float) -> bool:
    """Strictly higher by at least ``margin`` (the difference rounded to 1e-9, so 0.3 - 0.1
    meets a margin of 0.2), and a different text: equal texts teach nothing."""
    difference = chosen.rewards[label] - rejected.rewards[label]
    return difference > 0 and round(difference, 9) >= margin and chosen.text != rejected.text


def preference_lines(
    record: Trajectory,
    label: str | None,
    prompt: Sequence[ChatMessage],
    *,
    margin: float = 0.0,
    pairs: PairMode = "best-vs-rest",
    min_reward: float | None = None,
    reference: Any = None,
) -> list[PreferenceLine] | Skip:
    """Pairs of the item's scored drafts: a chosen draft must be usable, a rejected one may
    have problems. ``best-vs-rest`` pairs the best usable draft with each lower one; ``all``
    gives every ordered pair that meets the margin."""
    if label is None:
        return Skip("no primary reward")
    scored = [draft for draft in record.drafts if label in draft.rewards]
    if pairs == "best-vs-rest":
        best = select_draft(scored, "best", label)
        candidates = [best] if best is not None else []
    else:
        candidates = [draft for draft in scored if draft.usable]
    if not candidates:
        return Skip("no usable draft with a primary reward")
    lines = [
        PreferenceLine(
            id=record.id,
            prompt=list(prompt),
            chosen=[ChatMessage(role="assistant", content=chosen.text)],
            rejected=[ChatMessage(role="assistant", content=rejected.text)],
            chosen_reward=chosen.rewards[label],
            rejected_reward=rejected.rewards[label],
            chosen_step=chosen.step,
            rejected_step=rejected.step,
            reference=reference,
        )
        for chosen in candidates
        if _passes(chosen.rewards[label], min_reward) is None
        for rejected in scored
        if rejected is not chosen and _beats(chosen, rejected, label, margin)
    ]
    if lines:
        return lines
    if all(_passes(c.rewards[label], min_reward) is not None for c in candidates):
        return Skip("below --min-reward")
    return Skip("no pair meets the margin")
