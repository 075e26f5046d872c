"""Choosing an item's output draft and its total reward (flows.loop.select), over hand-built
drafts."""

from __future__ import annotations

import pytest

from flows.config.loop import Selection
from flows.data.records import Draft
from flows.loop.select import select_draft, total_reward


def draft(step: int, score: float | None = None, *, bad: bool = False) -> Draft:
    """A draft of ``step`` with primary reward "r" = ``score`` (unscored when None)."""
    return Draft(
        step=step,
        text=f"text {step}",
        problems=["bad"] if bad else [],
        rewards={} if score is None else {"r": score},
    )


MIXED = [draft(1, 0.8), draft(2, 0.5), draft(3, 0.8), draft(4, 0.9, bad=True)]
BAD_BEST = [draft(1, 0.2), draft(2, 1.0, bad=True), draft(3, 0.1)]

# (case, drafts, selection, primary, step chosen or None)
SELECTIONS: list[tuple[str, list[Draft], Selection, str | None, int | None]] = [
    ("last", [draft(1, 0.9), draft(2, 0.1)], "last", "r", 2),
    ("last: skips a bad last draft", [draft(1, 0.1), draft(2, 0.9, bad=True)], "last", "r", 1),
    ("best", [draft(1, 0.9), draft(2, 0.1)], "best", "r", 1),
    ("best: ties go to the later step", MIXED[:3], "best", "r", 3),
    ("best: never a bad draft", MIXED, "best", "r", 3),
    ("best: a bad draft's score", BAD_BEST, "best", "r", 1),
    ("best: unscored drafts are not candidates", [draft(1, 0.2), draft(2)], "best", "r", 1),
    ("best: none scored -> last usable", [draft(1), draft(2), draft(3, bad=True)], "best", "r", 2),
    ("best: only a bad draft scored", [draft(1), draft(2, 0.9, bad=True)], "best", "r", 1),
    ("best without a primary is last", [draft(1, 0.9), draft(2, 0.1)], "best", None, 2),
    ("best: another reward's scores", [draft(1, 0.9), draft(2, 0.1)], "best", "other", 2),
    ("none usable: last", [draft(1, bad=True), draft(2, bad=True)], "last", "r", None),
    ("none usable: best", [draft(1, 0.3, bad=True)], "best", "r", None),
    ("no drafts", [], "best", "r", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("drafts", "selection", "primary", "step"),
    [case[1:] for case in SELECTIONS],
    ids=[case[0] for case in SELECTIONS],
)
def test_select_draft(
    drafts: list[Draft], selection: Selection, primary: str | None, step: int | None
) -> None:
    chosen = select_draft(drafts, selection, primary)
    assert (chosen.step if chosen is not None else None) == step
    assert chosen is None or chosen in drafts


# (case, drafts, primary, R)
TOTALS: list[tuple[str, list[Draft], str | None, float | None]] = [
    ("summed", [draft(1, 0.25), draft(2, 0.5)], "r", 0.75),
    ("bad drafts count", MIXED, "r", 3.0),
    ("unscored drafts skipped", [draft(1, 0.25), draft(2), draft(3, 0.5)], "r", 0.75),
    ("rounded to 6 places", [draft(1, 0.1), draft(2, 0.2)], "r", 0.3),
    ("none scored", [draft(1), draft(2)], "r", None),
    ("no primary", [draft(1, 0.5)], None, None),
    ("no drafts", [], "r", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("drafts", "primary", "total"), [case[1:] for case in TOTALS], ids=[case[0] for case in TOTALS]
)
def test_total_reward(drafts: list[Draft], primary: str | None, total: float | None) -> None:
    assert total_reward(drafts, primary) == total
