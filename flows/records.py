"""The records that flow one way through a run: ``Item`` in, a ``Draft`` per step, and
one ``Trajectory`` out per item."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CachedAnswer", "Draft", "Item", "StopReason", "Trajectory", "Usage"]

StopReason = Literal["max_steps", "converged", "error"]


class Item(BaseModel):
    """One validated input row. ``reference`` is kept for rewards and never reaches a template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    line: int
    fields: dict[str, Any]
    reference: Any = None


class Usage(BaseModel):
    """Token counts as the endpoint reported them (zero when it reported none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class CachedAnswer(BaseModel):
    """What the request cache keeps of one answer; anything else in an entry makes it a miss."""

    model_config = ConfigDict(extra="forbid", strict=True)

    content: str
    finish_reason: str | None
    usage: Usage


class Draft(BaseModel):
    """One step's answer after post-processing, with what it cost and what is wrong with it."""

    step: int
    text: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = Field(default=1, description="HTTP attempts this draft took; 0 when cached")
    problems: list[str] = Field(default_factory=list)


class Trajectory(BaseModel):
    """The one output record per input item: every draft, the final output and why it stopped."""

    id: str
    status: Literal["ok", "failed"]
    output: str | None = None
    drafts: list[Draft] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    error: str | None = None

    @property
    def usage(self) -> Usage:
        total = Usage()
        for draft in self.drafts:
            total = total + draft.usage
        return total
