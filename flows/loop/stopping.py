"""Stop rules and token budgets: small callables over an item's drafts that compose with ``|``.

A stop rule takes a :class:`StopState` (the item's drafts so far and what the run knows) and
returns the :data:`~flows.data.records.StopReason` it stands for, or None to go on. ``a | b``
is a rule that returns the first reason that holds, ``a`` before ``b``, so the order of a
composition is its precedence; a plain function ``(state) -> StopReason | None`` composes too,
on either side of a :class:`StopRule` (as tenacity's ``stop_a | stop_b`` does).

After each step the configured rules (:func:`stop_rules`) are tried in this order, and the first
that holds is the item's ``stop_reason``: ``valid`` (the draft passes every validator, with
``stop_when_valid``), ``reward_threshold`` (a usable draft's primary reward reaches the
threshold), ``converged`` (the same usable text as the step before, with
``stop_when_unchanged``), ``stuck`` (a fix step's answer repeats a draft already found wrong,
even after the one fresh sample at ``repeat_temperature``), ``plateau`` (the primary reward has
not improved for ``plateau_steps`` steps), ``token_budget`` (the item's or the run's tokens are
spent) and ``max_steps``.
``critic_satisfied`` is decided by the engine after the critique, which only runs when none of
these held.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flows.config.loop import StopConfig
from flows.data.records import Draft, StopReason

__all__ = [
    "StopAny",
    "StopAtMaxSteps",
    "StopAtRewardThreshold",
    "StopFn",
    "StopOnPlateau",
    "StopOnTokenBudget",
    "StopRule",
    "StopState",
    "StopWhenStuck",
    "StopWhenUnchanged",
    "StopWhenValid",
    "item_tokens",
    "repeats_a_wrong_draft",
    "stop_reason",
    "stop_rules",
]


@dataclass(frozen=True, slots=True)
class StopState:
    """What a stop rule sees after a step.

    Attributes:
        drafts: the item's drafts so far, oldest first; never empty.
        max_steps: the run's number of steps.
        primary: label of the primary reward, None when no reward is configured.
        validated: at least one validator is configured, so "valid" means something.
        run_tokens: tokens the whole run has used so far, this item's included.
    """

    drafts: Sequence[Draft]
    max_steps: int
    primary: str | None
    validated: bool
    run_tokens: int

    @property
    def draft(self) -> Draft:
        """The latest draft, the one the rules judge."""
        return self.drafts[-1]

    @property
    def previous(self) -> Draft | None:
        """The draft of the step before, None after the first step."""
        return self.drafts[-2] if len(self.drafts) > 1 else None

    @property
    def score(self) -> float | None:
        """The latest draft's primary reward; None when it has none or no reward is configured."""
        return self.draft.rewards.get(self.primary) if self.primary else None


StopFn = Callable[[StopState], StopReason | None]
"""Anything that can stand as a stop rule: a :class:`StopRule` or a plain function."""


class StopRule(ABC):
    """A stop rule: called with a :class:`StopState`, it returns why to stop, or None."""

    __slots__ = ()

    @abstractmethod
    def __call__(self, state: StopState) -> StopReason | None:
        """The reason this rule stops the item for, or None when it does not hold."""

    def __or__(self, other: StopFn) -> StopAny:
        return StopAny((self, other))

    def __ror__(self, other: StopFn) -> StopAny:
        return StopAny((other, self))


@dataclass(frozen=True, slots=True)
class StopAny(StopRule):
    """The first reason any of ``rules`` gives, tried in order: earlier rules take precedence."""

    rules: tuple[StopFn, ...]

    def __call__(self, state: StopState) -> StopReason | None:
        for rule in self.rules:
            if (reason := rule(state)) is not None:
                return reason
        return None

    def __or__(self, other: StopFn) -> StopAny:
        return StopAny((*self.rules, other))

    def __ror__(self, other: StopFn) -> StopAny:
        return StopAny((other, *self.rules))


@dataclass(frozen=True, slots=True)
class StopWhenValid(StopRule):
    """``valid``: validators are configured and the latest draft passes them all."""

    def __call__(self, state: StopState) -> StopReason | None:
        return "valid" if state.validated and state.draft.usable else None


@dataclass(frozen=True, slots=True)
class StopAtRewardThreshold(StopRule):
    """``reward_threshold``: the latest draft is usable and its primary reward reaches
    ``threshold``."""

    threshold: float

    def __call__(self, state: StopState) -> StopReason | None:
        score = state.score
        if state.draft.usable and score is not None and score >= self.threshold:
            return "reward_threshold"
        return None


@dataclass(frozen=True, slots=True)
class StopWhenUnchanged(StopRule):
    """``converged``: the same text as the step before, and nothing wrong with either (two
    empty answers are not convergence)."""

    def __call__(self, state: StopState) -> StopReason | None:
        previous, draft = state.previous, state.draft
        if previous is None or not (previous.usable and draft.usable):
            return None
        return "converged" if previous.text == draft.text else None


def repeats_a_wrong_draft(earlier: Sequence[Draft], text: str) -> bool:
    """Whether ``text`` is the text of an earlier draft that had problems: a fix that changed
    nothing (or went back to an earlier wrong answer) and cannot pass where it failed before.
    An empty text is never a repeat: an empty answer is a problem of its own, not a copy."""
    return bool(text.strip()) and any(draft.problems and draft.text == text for draft in earlier)


@dataclass(frozen=True, slots=True)
class StopWhenStuck(StopRule):
    """``stuck``: the latest draft, a fix, repeats a draft already found wrong (issue 14: at
    temperature 0 a small model returned the identical program in 19 of 25 fix steps, and every
    further step repeated it). Going on would pay for the same answer again."""

    def __call__(self, state: StopState) -> StopReason | None:
        draft = state.draft
        if draft.kind != "fix":
            return None
        return "stuck" if repeats_a_wrong_draft(state.drafts[:-1], draft.text) else None


@dataclass(frozen=True, slots=True)
class StopOnPlateau(StopRule):
    """``plateau``: the last ``steps`` scored drafts brought no improvement over the best one
    before them."""

    steps: int

    def __call__(self, state: StopState) -> StopReason | None:
        if not state.primary:
            return None
        primary = state.primary
        scores = [draft.rewards[primary] for draft in state.drafts if primary in draft.rewards]
        if len(scores) <= self.steps:
            return None
        return "plateau" if max(scores[-self.steps :]) <= max(scores[: -self.steps]) else None


@dataclass(frozen=True, slots=True)
class StopOnTokenBudget(StopRule):
    """``token_budget``: the item's tokens reach ``per_item`` or the run's reach ``per_run``
    (None: no such budget)."""

    per_item: int | None = None
    per_run: int | None = None

    def spent(self, drafts: Sequence[Draft], run_tokens: int) -> bool:
        """Whether either budget is spent by ``drafts`` and the run's ``run_tokens``."""
        if self.per_item is not None and item_tokens(drafts) >= self.per_item:
            return True
        return self.per_run is not None and run_tokens >= self.per_run

    def __call__(self, state: StopState) -> StopReason | None:
        return "token_budget" if self.spent(state.drafts, state.run_tokens) else None


@dataclass(frozen=True, slots=True)
class StopAtMaxSteps(StopRule):
    """``max_steps``: the latest draft is the run's last step."""

    def __call__(self, state: StopState) -> StopReason | None:
        return "max_steps" if state.draft.step >= state.max_steps else None


def item_tokens(drafts: Sequence[Draft]) -> int:
    """Tokens of every request of an item so far: steps, critiques and judges."""
    return sum(draft.total_usage.tokens for draft in drafts)


def stop_rules(stop: StopConfig) -> StopAny:
    """The rules ``stop`` configures, composed in the documented order of precedence.

    ``max_steps`` always applies; a rule whose setting is off (None, False) is left out.
    """
    rules: list[StopFn] = []
    if stop.stop_when_valid:
        rules.append(StopWhenValid())
    if stop.reward_threshold is not None:
        rules.append(StopAtRewardThreshold(stop.reward_threshold))
    if stop.stop_when_unchanged:
        rules.append(StopWhenUnchanged())
    rules.append(StopWhenStuck())
    if stop.plateau_steps is not None:
        rules.append(StopOnPlateau(stop.plateau_steps))
    if stop.max_tokens_per_item is not None or stop.max_tokens_per_run is not None:
        rules.append(StopOnTokenBudget(stop.max_tokens_per_item, stop.max_tokens_per_run))
    rules.append(StopAtMaxSteps())
    return StopAny(tuple(rules))


def stop_reason(
    drafts: Sequence[Draft],
    *,
    max_steps: int,
    stop: StopConfig,
    primary: str | None,
    validated: bool,
    run_tokens: int,
) -> StopReason | None:
    """Why the item stops after its latest draft, or None to go on.

    ``drafts`` must not be empty; ``validated``: at least one validator is configured, so
    "valid" means something.
    """
    state = StopState(drafts, max_steps, primary, validated, run_tokens)
    return stop_rules(stop)(state)
