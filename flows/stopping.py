"""Stop rules and token budgets: pure functions over an item's drafts.

After each step the rules are tried in this order, and the first that holds is the item's
``stop_reason``: ``valid`` (the draft passes every validator, with ``stop_when_valid``),
``reward_threshold`` (a usable draft's primary reward reaches the threshold), ``converged`` (the
same usable text as the step before, with ``stop_when_unchanged``), ``plateau`` (the primary
reward has not improved for ``plateau_steps`` steps), ``token_budget`` (the item's or the run's
tokens are spent) and ``max_steps``. ``critic_satisfied`` is decided by the engine after the
critique, which only runs when none of these held.
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.loop_settings import StopConfig
from flows.records import Draft, StopReason

__all__ = ["item_tokens", "over_budget", "stop_reason"]


def item_tokens(drafts: Sequence[Draft]) -> int:
    """Tokens of every request of an item so far: steps, critiques and judges."""
    return sum(draft.total_usage.tokens for draft in drafts)


def over_budget(stop: StopConfig, drafts: Sequence[Draft], run_tokens: int) -> bool:
    """Whether the item's or the whole run's token budget is spent."""
    per_item, per_run = stop.max_tokens_per_item, stop.max_tokens_per_run
    if per_item is not None and item_tokens(drafts) >= per_item:
        return True
    return per_run is not None and run_tokens >= per_run


def _plateaued(drafts: Sequence[Draft], primary: str, steps: int) -> bool:
    """The last ``steps`` scored drafts brought no improvement over the best one before them."""
    scores = [draft.rewards[primary] for draft in drafts if primary in draft.rewards]
    if len(scores) <= steps:
        return False
    return max(scores[-steps:]) <= max(scores[:-steps])


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

    ``validated``: at least one validator is configured, so "valid" means something.
    """
    draft = drafts[-1]
    previous = drafts[-2] if len(drafts) > 1 else None
    score = draft.rewards.get(primary) if primary else None
    if stop.stop_when_valid and validated and draft.usable:
        return "valid"
    threshold = stop.reward_threshold
    if threshold is not None and draft.usable and score is not None and score >= threshold:
        return "reward_threshold"
    if stop.stop_when_unchanged and previous is not None and _same_usable_text(previous, draft):
        return "converged"
    plateau = stop.plateau_steps
    if plateau is not None and primary and _plateaued(drafts, primary, plateau):
        return "plateau"
    if over_budget(stop, drafts, run_tokens):
        return "token_budget"
    if draft.step >= max_steps:
        return "max_steps"
    return None


def _same_usable_text(previous: Draft, draft: Draft) -> bool:
    """Converged: the same text twice, and nothing wrong with it (two empty answers are not)."""
    return previous.usable and draft.usable and previous.text == draft.text
