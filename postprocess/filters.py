"""Filters: steps of a cleaner chain that reject a draft instead of changing it.

Some answers cannot be fixed by cleaning: an empty answer, a refusal ("As an AI ..."), a draft
far over length. A filter returns the text unchanged when it passes and raises
:class:`DraftRejected` when it does not; the engine records the reason as a problem of that
step, so the next prompt can ask the model to fix it. Filters are named in configuration like
cleaners (``"reject_if:^As an AI"``).
"""

from __future__ import annotations

import re

from postprocess.cleaners import Cleaner
from refine.errors import ConfigError

__all__ = ["DraftRejected", "reject_empty", "reject_if", "reject_longer", "reject_unless"]


class DraftRejected(Exception):
    """A filter refused a draft; ``reason`` is a sentence fit for a log and for the next prompt.

    ``text`` is the draft as the filter saw it, after the cleaners before it in the chain.
    It is not a :class:`~refine.errors.RefineError`: a rejected draft is an outcome of one
    step, never a reason to stop the run.
    """

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.text = text


def reject_empty(text: str) -> str:
    """Reject a draft that is empty or only whitespace."""
    if not text.strip():
        raise DraftRejected("draft rejected: it is empty", text)
    return text


def reject_if(pattern: re.Pattern[str]) -> Cleaner:
    """A filter that rejects drafts in which ``pattern`` is found (``re.search``)."""

    def reject(text: str) -> str:
        if pattern.search(text):
            reason = f"draft rejected: it matches the forbidden pattern {pattern.pattern!r}"
            raise DraftRejected(reason, text)
        return text

    reject.__name__ = reject.__qualname__ = "reject_if"
    return reject


def reject_unless(pattern: re.Pattern[str]) -> Cleaner:
    """A filter that rejects drafts in which ``pattern`` is not found (``re.search``)."""

    def reject(text: str) -> str:
        if not pattern.search(text):
            reason = f"draft rejected: it does not match the required pattern {pattern.pattern!r}"
            raise DraftRejected(reason, text)
        return text

    reject.__name__ = reject.__qualname__ = "reject_unless"
    return reject


def reject_longer(limit: int) -> Cleaner:
    """A filter that rejects drafts over ``limit`` characters, where cutting would lose meaning."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"reject_longer needs a positive integer limit, got {limit!r}")

    def reject(text: str) -> str:
        if len(text) > limit:
            reason = f"draft rejected: it is {len(text)} characters long, over the limit of {limit}"
            raise DraftRejected(reason, text)
        return text

    reject.__name__ = reject.__qualname__ = f"reject_longer_{limit}"
    return reject
