"""The word diff between two consecutive drafts, as ``refine show`` and ``refine report`` show it.

Words are compared, not characters: a draft that rephrases one clause shows that clause as
removed and added, not a scatter of letters. Whitespace belongs to the word before it, so a
re-wrapped paragraph whose words are unchanged shows no change (a diff of only layout is
reported as ``same`` words). :mod:`difflib`'s SequenceMatcher finds the matching runs
(Ratcliff/Obershelp, without its "junk" heuristic, which hides changes in long drafts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

__all__ = ["Change", "DiffOp", "changed_words", "word_diff"]

DiffOp = Literal["same", "removed", "added"]

_WORD = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class Change:
    """A run of words: kept (``same``), only in the earlier draft (``removed``), or only in
    the later one (``added``). ``text`` holds the words with the whitespace that followed them
    in the draft they come from."""

    op: DiffOp
    text: str


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_diff(before: str, after: str) -> list[Change]:
    """The changes that turn ``before`` into ``after``, in reading order.

    A replaced run is given as its removed words then its added words. Adjacent runs of the
    same kind are merged. ``word_diff(a, a)`` is one ``same`` run (or none for empty text);
    ``"".join`` of the ``same`` and ``added`` runs is ``after`` up to whitespace.
    """
    old, new = _words(before), _words(after)
    matcher = SequenceMatcher(
        None, [w.strip() for w in old], [w.strip() for w in new], autojunk=False
    )
    changes: list[Change] = []

    def put(op: DiffOp, words: list[str]) -> None:
        text = "".join(words)
        if not text:
            return
        if changes and changes[-1].op == op:
            changes[-1] = Change(op, changes[-1].text + text)
        else:
            changes.append(Change(op, text))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            put("same", new[j1:j2])
        else:
            put("removed", old[i1:i2])
            put("added", new[j1:j2])
    return changes


def changed_words(changes: list[Change]) -> tuple[int, int]:
    """How many words ``changes`` remove and add: ``(removed, added)``."""
    removed = sum(len(c.text.split()) for c in changes if c.op == "removed")
    added = sum(len(c.text.split()) for c in changes if c.op == "added")
    return removed, added
