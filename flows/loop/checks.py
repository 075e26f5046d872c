"""Judge one draft: its validators' problems and its rewards (the LLM judge aside).

Validators and rewards are plain synchronous callables. Most take microseconds and run inline;
when the run uses the sandbox (``tests_pass``, ``test_pass_rate``) a draft's checks run in a
worker thread instead, at most ``concurrency`` at once, so a sandbox run never blocks the event
loop that keeps the other items' requests moving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flows.loop.plan import LoopPlan
from postprocess.rewards import RewardDraft, RewardUnavailable
from postprocess.validator_registry import run_validators
from refine.errors import RefineError

__all__ = ["Assessment", "Assessor", "CheckCrashed"]


class CheckCrashed(RefineError):
    """A reward raised on an item: a bug in the reward or the row, never shown to the model."""


@dataclass
class Assessment:
    """What the checks found in one draft."""

    problems: list[str] = field(default_factory=list)
    rewards: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def assess(
    plan: LoopPlan,
    row: Mapping[str, Any],
    draft: RewardDraft,
    *,
    validate: bool,
    score: bool,
) -> Assessment:
    """Run the validators (``validate``) and the non-judge rewards (``score``) on ``draft``.

    Raises ValidatorCrashed or CheckCrashed for a check that fails on its own; a reward that
    cannot be computed for this item becomes a note, never a number.
    """
    found = Assessment()
    if validate:
        found.problems = list(run_validators(plan.validators, draft.text, row).problems)
    if not score:
        return found
    for reward in plan.computed:
        try:
            found.rewards[reward.label] = round(reward(draft, row), 6)
        except RewardUnavailable as exc:
            found.notes.append(str(exc))
        except RefineError:  # a broken contract (ConfigError) stops the run
            raise
        except Exception as exc:  # user rewards are user code: this item fails, not the run
            message = f"reward {reward.label!r} crashed: {type(exc).__name__}: {exc}"
            raise CheckCrashed(message) from exc
    return found


class Assessor:
    """Runs :func:`assess` for the engine: inline, or in a thread when the sandbox is used."""

    def __init__(self, plan: LoopPlan, concurrency: int) -> None:
        self.plan = plan
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(
        self, row: Mapping[str, Any], draft: RewardDraft, *, validate: bool, score: bool
    ) -> Assessment:
        if not self.plan.uses_sandbox:
            return assess(self.plan, row, draft, validate=validate, score=score)
        async with self._slots:
            return await asyncio.to_thread(
                assess, self.plan, row, draft, validate=validate, score=score
            )
