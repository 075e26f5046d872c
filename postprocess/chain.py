"""Chains of cleaners (each task kind's default chain is in the task table, prompts.tasks).

A chain keeps the specs it was built from, so logs and errors can say which cleaner did what.
"""

from __future__ import annotations

from dataclasses import dataclass

from postprocess.cleaners import Cleaner
from refine.errors import ConfigError

__all__ = ["CleanerChain"]


@dataclass(frozen=True)
class CleanerChain:
    """Cleaners applied in order; itself a :data:`Cleaner`.

    A filter's :class:`~postprocess.filters.DraftRejected` passes through untouched: rejecting
    a draft is an outcome the engine records for the step, not a broken cleaner.
    """

    specs: tuple[str, ...]
    cleaners: tuple[Cleaner, ...]

    def __call__(self, text: str) -> str:
        for spec, cleaner in zip(self.specs, self.cleaners, strict=True):
            text = cleaner(text)
            if not isinstance(text, str):  # a user cleaner broke the contract
                kind = type(text).__name__
                raise ConfigError(f"cleaner {spec!r} returned {kind}, but cleaners must return str")
        return text
