"""The word diff between consecutive drafts, and how ``refine show`` writes it."""

from __future__ import annotations

import pytest

from flows.view.diff import Change, changed_words, word_diff
from flows.view.terminal import diff_text


def test_a_replaced_clause_is_its_removed_words_then_its_added_words() -> None:
    changes = word_diff("The road is Elm Street.", "The road is Elm Road now.")
    assert changes == [
        Change("same", "The road is Elm "),
        Change("removed", "Street."),
        Change("added", "Road now."),
    ]
    assert changed_words(changes) == (1, 2)


def test_equal_and_empty_texts() -> None:
    assert word_diff("Same words here.", "Same words here.") == [Change("same", "Same words here.")]
    assert word_diff("", "") == []
    assert word_diff("", "New text.") == [Change("added", "New text.")]
    assert word_diff("Old text.", "") == [Change("removed", "Old text.")]


def test_a_rewrapped_paragraph_has_no_changed_words() -> None:
    changes = word_diff("one two\nthree  four", "one two three\nfour")
    assert {c.op for c in changes} == {"same"} and changed_words(changes) == (0, 0)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("a b c d e", "a x c e f"),
        ("def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"),
        ("The council closes a road.", "The council closes Elm Road on Sundays."),
    ],
)
def test_the_kept_and_added_runs_spell_the_later_draft(before: str, after: str) -> None:
    changes = word_diff(before, after)
    assert "".join(c.text for c in changes if c.op != "removed").split() == after.split()
    assert "".join(c.text for c in changes if c.op != "added").split() == before.split()


def test_the_terminal_writes_git_word_diff_marks_and_colours() -> None:
    text = diff_text(word_diff("The road is Elm Street now.", "The road is Elm Road now."))
    assert text.plain == "The road is Elm [-Street-]{+Road+} now."
    styles = {text.plain[span.start : span.end]: str(span.style) for span in text.spans}
    assert styles == {"[-Street-]": "red strike", "{+Road+}": "green"}
    added_only = diff_text(word_diff("on Sundays.", "to cars on Sundays."))
    assert added_only.plain == "{+to cars+} on Sundays."
