"""The choice of an item's output draft and its total reward: pure functions over its drafts.

``select_draft`` picks the output (the last usable draft, or under ``best`` the usable one with
the highest primary reward); ``total_reward`` sums the primary reward over the trajectory. Both
the run (:mod:`flows.loop.refiner`) and the commands that read finished runs (``refine eval``,
``refine export``) use them, so a draft is chosen by the same rules everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from flows.config.loop import Selection
from flows.data.records import Draft

__all__ = ["Selectable", "select_draft", "total_reward"]


class Selectable(Protocol):
    """What choosing an output needs of a draft: a :class:`Draft`, or the text-free summary of
    one that ``refine eval`` keeps (:class:`flows.eval.curves.StepPoint`)."""

    @property
    def step(self) -> int: ...

    @property
    def usable(self) -> bool: ...

    @property
    def rewards(self) -> Mapping[str, float]: ...


D = TypeVar("D", bound=Selectable)


def select_draft(drafts: Sequence[D], select: Selection, primary: str | None) -> D | None:
    """The output draft: the last usable one, or under ``best`` the usable one with the highest
    primary reward, ties going to the later step. Drafts with problems are never chosen; if no
    usable draft has a score (no reference, say), ``best`` falls back to the last usable one.
    """
    usable = [draft for draft in drafts if draft.usable]
    if not usable:
        return None
    if select == "best" and primary is not None:
        scored = [draft for draft in usable if primary in draft.rewards]
        if scored:
            return max(scored, key=lambda draft: (draft.rewards[primary], draft.step))
    return usable[-1]


def total_reward(drafts: Sequence[Draft], primary: str | None) -> float | None:
    """R = Σ r_t of the primary reward over the drafts that have it; None when none has."""
    if primary is None:
        return None
    values = [draft.rewards[primary] for draft in drafts if primary in draft.rewards]
    return round(sum(values), 6) if values else None
