"""The records that flow one way through a run: ``Item`` in, a ``Draft`` per step, and
one ``Trajectory`` out per item."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

__all__ = [
    "CachedAnswer",
    "Draft",
    "DraftKind",
    "Item",
    "SideRequest",
    "StopReason",
    "Trajectory",
    "Usage",
]

StopReason = Literal[
    "max_steps",
    "converged",
    "valid",
    "reward_threshold",
    "plateau",
    "critic_satisfied",
    "stuck",
    "token_budget",
    "error",
]
"""Why an item stopped; see the README's "Stop rules" for when each one applies."""

DraftKind = Literal["draft", "fix"]
"""``fix``: the step rendered the task's ``fix`` template because the last draft had problems."""


class Item(BaseModel):
    """One validated input row. ``reference`` is kept for rewards and never reaches a template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    line: int
    fields: dict[str, Any]
    reference: Any = None


class Usage(BaseModel):
    """Token counts as the endpoint reported them, or estimated where it reported none.

    ``estimated``: a count was missing from the answer and was estimated from its characters
    (see ``flows.llm.usage.usage_of``); a sum of usages is estimated when any part of it is.
    It is written only when True, so records of endpoints that report usage keep their shape,
    and records written before the field existed read as reported (False).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False

    @model_serializer(mode="wrap")
    def _estimated_only_when_true(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.estimated:
            data.pop("estimated", None)
        return data

    @property
    def tokens(self) -> int:
        """What a request counts against a token budget: prompt plus completion tokens.

        A property, so it is not serialized: the record keeps the three reported counts.
        """
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            estimated=self.estimated or other.estimated,
        )


class CachedAnswer(BaseModel):
    """What the request cache keeps of one answer; anything else in an entry makes it a miss."""

    model_config = ConfigDict(extra="forbid", strict=True)

    content: str
    finish_reason: str | None
    usage: Usage
    token_logprobs: list[float] | None = None


class SideRequest(BaseModel):
    """An extra request about a draft and what it cost: a critique, a judge's score, or a
    ``repeat``: a fix answer that repeated a draft already found wrong, set aside for one more
    sample at a higher temperature (its text is the repeated answer)."""

    role: Literal["critique", "judge", "repeat"]
    text: str
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1


class Draft(BaseModel):
    """One step's answer after post-processing, with what it cost and what is wrong with it."""

    step: int
    kind: DraftKind = "draft"
    text: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = Field(default=1, description="HTTP attempts this draft took; 0 when cached")
    problems: list[str] = Field(default_factory=list)
    rewards: dict[str, float] = Field(
        default_factory=dict, description="reward label -> value; the first configured is primary"
    )
    reward_notes: list[str] = Field(
        default_factory=list, description="why a configured reward has no value for this draft"
    )
    critique: str | None = None
    side_requests: list[SideRequest] = Field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether this draft may be the output: nothing is known to be wrong with it."""
        return not self.problems

    @property
    def total_usage(self) -> Usage:
        """The step's request plus its critique and judge requests."""
        total = self.usage
        for request in self.side_requests:
            total = total + request.usage
        return total


class Trajectory(BaseModel):
    """The one output record per input item: every draft, the final output and why it stopped."""

    id: str
    status: Literal["ok", "failed"]
    output: str | None = None
    drafts: list[Draft] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    error: str | None = None
    selected_step: int | None = Field(default=None, description="the step whose text is output")
    reward: str | None = Field(default=None, description="label of the primary reward")
    total_reward: float | None = Field(
        default=None, description="R: the primary reward summed over the drafts that have it"
    )

    @property
    def usage(self) -> Usage:
        """Every request of the item: steps, critiques and judges."""
        total = Usage()
        for draft in self.drafts:
            total = total + draft.total_usage
        return total
