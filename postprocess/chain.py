"""Chains of cleaners, and the default chain for each kind of output.

A chain keeps the specs it was built from, so logs and errors can say which cleaner did what.
"""

from __future__ import annotations

from dataclasses import dataclass

from postprocess.cleaners import Cleaner
from refine.errors import ConfigError

__all__ = ["CleanerChain", "default_chain_for"]


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


def default_chain_for(plain_text: bool, max_chars: int | None = None) -> list[str]:
    """The cleaner specs used when the configuration names none.

    Prose loses a fence wrapped around the whole answer and is cut to ``max_chars`` if given;
    code keeps only the first fenced block, since models surround code with explanations.
    Truncating code would only break it, so ``max_chars`` applies to plain text alone.
    """
    if not plain_text:
        return ["extract_code_block", "strip"]
    specs = ["strip_code_fences", "strip"]
    if max_chars is not None:
        if max_chars < 1:
            raise ConfigError(f"max_chars must be positive or unset, got {max_chars}")
        specs.append(f"truncate_chars:{max_chars}")
    return specs
