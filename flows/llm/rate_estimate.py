"""A request's tokens before it is sent, for ``[endpoint] tpm``: its prompt's characters over
the characters per token the answers' usage showed so far, plus what its answer may cost."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from flows.llm.usage import CHARS_PER_TOKEN

__all__ = ["TokenEstimator"]


def _prompt_chars(messages: Sequence[Any]) -> int:
    """Characters of the messages' text (a list of parts counts its text parts)."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, Mapping)]
            content = " ".join(t for t in texts if isinstance(t, str))
        total += len(content) if isinstance(content, str) else 0
    return total


class TokenEstimator:
    """A request's tokens before it is sent, calibrated by the usage answers report."""

    MIN_RATIO, MAX_RATIO = 0.5, 12.0  # characters per token, past anything a tokenizer does

    def __init__(self) -> None:
        self._chars = 0  # prompt characters of answers with reported usage
        self._prompt_tokens = 0  # and their reported prompt tokens
        self._completion_tokens = 0
        self._answers = 0

    @property
    def chars_per_token(self) -> float:
        """Reported prompt tokens over their characters so far; :data:`CHARS_PER_TOKEN` first."""
        if not self._prompt_tokens:
            return float(CHARS_PER_TOKEN)
        return min(self.MAX_RATIO, max(self.MIN_RATIO, self._chars / self._prompt_tokens))

    def estimate(self, body: Mapping[str, Any]) -> tuple[int, int]:
        """Tokens of the request ``body`` and its prompt characters.

        The prompt at :attr:`chars_per_token`, plus ``max_tokens`` (or
        ``max_completion_tokens``) for each of the ``n`` answers; a request that sets neither
        counts the mean completion seen so far instead.
        """
        messages = body.get("messages")
        chars = _prompt_chars(messages if isinstance(messages, list) else [])
        most = body.get("max_tokens") or body.get("max_completion_tokens")
        if not isinstance(most, int):
            most = self._completion_tokens // self._answers if self._answers else 0
        n = body.get("n")
        answers = n if isinstance(n, int) and n > 1 else 1
        return math.ceil(chars / self.chars_per_token) + most * answers, chars

    def observe(self, prompt_chars: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Learn from one answer's reported usage (never from an estimated one)."""
        if prompt_chars and prompt_tokens:
            self._chars += prompt_chars
            self._prompt_tokens += prompt_tokens
        self._completion_tokens += completion_tokens
        self._answers += 1
