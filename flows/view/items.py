"""The items of a run's output as ``refine show`` and ``refine report`` look at them: which
records to load (by id, or the failed ones) and, per draft, the facts a viewer prints.

Records are read only through :class:`~flows.data.output_reader.RecordReader`, so the latest
record of an id wins and a file that is not an output is refused with the reader's own error.
Nothing here renders: :mod:`flows.view.terminal` and :mod:`flows.view.html` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.data.output_reader import RecordReader
from flows.data.records import Candidate, Draft, DraftKind, SideRequest, Trajectory
from flows.view.diff import Change, changed_words, word_diff
from flows.view.safe_text import visible
from refine.errors import ConfigError

__all__ = [
    "DraftView",
    "ItemSummary",
    "Loaded",
    "draft_views",
    "load_items",
    "load_trajectories",
    "torn_tail_note",
    "primary_reward",
    "summarize",
]


@dataclass(frozen=True)
class Loaded:
    """The records :func:`load_items` read, and whether the file's last line was torn (cut off
    mid-write, so left out: a viewer says so)."""

    records: list[Trajectory]
    torn_tail: bool


def torn_tail_note(path: Path) -> str:
    """What a viewer says (once, on stderr) when the last line of ``path`` was torn."""
    return (
        f"note: the last line of {visible(str(path))} is incomplete (a run still writing, or "
        "one stopped mid-write): it is left out"
    )


def load_trajectories(
    path: Path, ids: Sequence[str] = (), failed: bool = False
) -> list[Trajectory]:
    """The records of :func:`load_items` (without whether the last line was torn)."""
    return load_items(path, ids, failed).records


def load_items(path: Path, ids: Sequence[str] = (), failed: bool = False) -> Loaded:
    """The latest record of each id in the output file ``path``, in file order.

    ``ids``: only these, in the order given (a repeated id once). ``failed``: only the items
    whose latest record is ``failed`` (with ``ids``, the failed ones among them).

    Raises:
        InputError: the file is missing or is not a run's output (the reader's message, with
            its hint).
        ConfigError: an id in ``ids`` is not in it (naming the ids and the file).
    """
    reader = RecordReader(path)
    records = [record for _, record in reader]
    if ids:
        by_id = {record.id: record for record in records}
        unknown = [item_id for item_id in dict.fromkeys(ids) if item_id not in by_id]
        if unknown:
            raise ConfigError(
                f"{path}: {_unknown_ids(unknown, by_id)}; "
                "`refine show OUTPUT` with no id lists the items"
            )
        records = [by_id[item_id] for item_id in dict.fromkeys(ids)]
    if failed:
        records = [record for record in records if record.status == "failed"]
    return Loaded(records, reader.torn_tail)


_KNOWN_SHOWN = 5


def _unknown_ids(unknown: list[str], by_id: dict[str, Trajectory]) -> str:
    names = ", ".join(visible(repr(item_id)) for item_id in unknown)
    noun = "id" if len(unknown) == 1 else "ids"
    known = visible(", ".join(list(by_id)[:_KNOWN_SHOWN])) + (
        ", …" if len(by_id) > _KNOWN_SHOWN else ""
    )
    return f"no item with {noun} {names} in this output ({len(by_id)} item(s): {known or 'none'})"


def primary_reward(record: Trajectory) -> str | None:
    """The label of the record's primary reward: the one the run named, else the first reward
    any draft holds; None when no draft has a reward."""
    if record.reward:
        return record.reward
    for draft in record.drafts:
        if draft.rewards:
            return next(iter(draft.rewards))
    return None


@dataclass(frozen=True)
class ItemSummary:
    """One line of the table of items.

    ``first_reward``/``last_reward``: the primary reward of the first and the last draft that
    hold it (None when none does). ``tokens``: prompt plus completion tokens of every request
    of the item (steps, critiques, judges, every candidate).
    """

    id: str
    status: str
    stop_reason: str | None
    steps: int
    selected_step: int | None
    reward: str | None
    first_reward: float | None
    last_reward: float | None
    tokens: int
    error: str | None


def summarize(record: Trajectory) -> ItemSummary:
    """The table line of one record."""
    label = primary_reward(record)
    values = [d.rewards[label] for d in record.drafts if label is not None and label in d.rewards]
    return ItemSummary(
        id=record.id,
        status=record.status,
        stop_reason=record.stop_reason,
        steps=len(record.drafts),
        selected_step=record.selected_step,
        reward=label,
        first_reward=values[0] if values else None,
        last_reward=values[-1] if values else None,
        tokens=record.usage.tokens,
        error=record.error,
    )


@dataclass(frozen=True)
class DraftView:
    """One draft of an item with what a viewer shows of it.

    Attributes:
        draft: the record's draft itself (text, usage, candidates, ...).
        changes: the word diff from the previous draft's text (:func:`~flows.view.diff.word_diff`);
            for the first draft, its whole text as one ``added`` run.
        removed_words, added_words: how many words ``changes`` remove and add.
        selected: whether this draft's text is the item's output (its ``selected_step``).
        tokens: prompt plus completion tokens of every request of the step (its critique,
            judges and every best-of-N candidate included).
        own_tokens: prompt plus completion tokens of the draft's own request.
    """

    draft: Draft
    changes: list[Change]
    removed_words: int
    added_words: int
    selected: bool
    tokens: int
    own_tokens: int

    @property
    def step(self) -> int:
        """The draft's step number."""
        return self.draft.step

    @property
    def kind(self) -> DraftKind:
        """``draft`` or ``fix`` (the step rendered the fix template)."""
        return self.draft.kind

    @property
    def problems(self) -> list[str]:
        """What the validators found wrong with the draft (empty: usable)."""
        return self.draft.problems

    @property
    def rewards(self) -> dict[str, float]:
        """Reward label -> value (empty when the run computes none)."""
        return self.draft.rewards

    @property
    def reward_notes(self) -> list[str]:
        """Why a configured reward has no value for this draft."""
        return self.draft.reward_notes

    @property
    def critique(self) -> str | None:
        """The critic's text about this draft, if the run asked for one."""
        return self.draft.critique

    @property
    def side_requests(self) -> list[SideRequest]:
        """The step's critique, judge and repeat requests."""
        return self.draft.side_requests

    @property
    def candidates(self) -> list[Candidate]:
        """Best-of-N: every candidate of the step, in order (empty for a one-sample step)."""
        return self.draft.candidates


def draft_views(record: Trajectory) -> list[DraftView]:
    """Every draft of ``record`` in step order, each with its diff from the one before."""
    views: list[DraftView] = []
    previous: str | None = None
    for draft in record.drafts:
        if previous is None:
            changes = [Change("added", draft.text)] if draft.text else []
        else:
            changes = word_diff(previous, draft.text)
        removed, added = changed_words(changes)
        views.append(
            DraftView(
                draft=draft,
                changes=changes,
                removed_words=removed,
                added_words=added,
                selected=record.selected_step == draft.step,
                tokens=draft.total_usage.tokens,
                own_tokens=draft.usage.tokens,
            )
        )
        previous = draft.text
    return views
