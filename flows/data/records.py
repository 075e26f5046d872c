"""The records that flow one way through a run: ``Item`` in, a ``Draft`` per step, and
one ``Trajectory`` out per item."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    "Candidate",
    "Draft",
    "DraftKind",
    "Item",
    "SideRequest",
    "StopReason",
    "Trajectory",
    "Usage",
    "request_dicts",
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
    batch: bool = False
    """One request's tokens were billed at a Batch API's price (``mode = "batch"``); written
    only when True, like ``estimated``. A sum of usages never carries it: count batch tokens
    request by request (:func:`request_dicts`)."""

    @model_serializer(mode="wrap")
    def _flags_only_when_true(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.estimated:
            data.pop("estimated", None)
        if not self.batch:
            data.pop("batch", None)
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


class Candidate(BaseModel):
    """One of the N answers a best-of-N step drew, cleaned, validated and scored like a draft.

    ``index`` is its sample index (0 to N-1; part of its request's cache key), ``seed`` the
    seed its request carried (for the ``n`` choices of one request, that request's seed: None
    when it sent none).
    """

    index: int
    text: str
    seed: int | None = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1
    problems: list[str] = Field(default_factory=list)
    rewards: dict[str, float] = Field(default_factory=dict)
    reward_notes: list[str] = Field(default_factory=list)
    side_requests: list[SideRequest] = Field(default_factory=list)
    shared_request: bool = Field(
        default=False,
        description="a later choice of one request with n: no request of its own, its usage "
        "its share of that request's",
    )

    @property
    def usable(self) -> bool:
        """Whether nothing is known to be wrong with this candidate."""
        return not self.problems

    def requests(self) -> list[tuple[bool, Usage]]:
        """``(cached, usage)`` of its request and of its judge requests."""
        return [(self.cached, self.usage)] + [(s.cached, s.usage) for s in self.side_requests]


class Draft(BaseModel):
    """One step's answer after post-processing, with what it cost and what is wrong with it.

    In a best-of-N step (``samples`` > 1) the draft is the winning candidate: its text, usage,
    problems and rewards are the winner's, ``candidates`` holds all N (the winner included, at
    ``candidate``) and ``choice`` says why the winner won. The three are left out of the record
    of a one-sample step.
    """

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
    candidates: list[Candidate] = Field(
        default_factory=list, description="best-of-N: every candidate of the step, in order"
    )
    candidate: int | None = Field(default=None, description="best-of-N: the winner's index")
    choice: str | None = Field(default=None, description="best-of-N: why the winner won")

    @model_serializer(mode="wrap")
    def _candidates_only_when_sampled(
        self, handler: SerializerFunctionWrapHandler
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if not self.candidates:
            for key in ("candidates", "candidate", "choice"):
                data.pop(key, None)
        return data

    @property
    def usable(self) -> bool:
        """Whether this draft may be the output: nothing is known to be wrong with it."""
        return not self.problems

    def requests(self) -> list[tuple[bool, Usage]]:
        """``(cached, usage)`` of every request the step made: its own (the winner's), its
        critique, judge and repeat requests, and every other candidate's with its judges."""
        found = [(self.cached, self.usage)] + [(s.cached, s.usage) for s in self.side_requests]
        for other in self.candidates:
            if other.index != self.candidate:
                found.extend(other.requests())
        return found

    def request_count(self) -> int:
        """How many requests :meth:`requests` are: the later choices of one request with ``n``
        are no requests of their own."""
        return len(self.requests()) - sum(c.shared_request for c in self.candidates)

    @property
    def total_usage(self) -> Usage:
        """Every request of the step: the draft's (all candidates') plus its critique and judge
        requests. What the token budgets and ``refine eval`` count."""
        total = Usage()
        for _, usage in self.requests():
            total = total + usage
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


def request_dicts(draft: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Every request of a draft as written in a record (a dict, as the UI's readers keep it),
    each with whether it shares a request counted elsewhere (a later choice of one request with
    ``n``): the draft's own, its side requests, and each other best-of-N candidate's with its
    side requests. Each has ``cached``, ``attempts`` and ``usage``, as :meth:`Draft.requests`
    reads them.
    """
    candidates = [c for c in draft.get("candidates") or [] if isinstance(c, Mapping)]
    winner = draft.get("candidate")
    yield draft, any(c.get("index") == winner and c.get("shared_request") for c in candidates)
    for side in draft.get("side_requests") or []:
        yield side, False
    for other in candidates:
        if other.get("index") != winner:
            yield other, bool(other.get("shared_request"))
            for side in other.get("side_requests") or []:
                yield side, False
