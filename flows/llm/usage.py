"""Token usage as an endpoint reported it, and an estimate for each count it left out.

Budgets and the summary count what each answer reports; an endpoint that sends no usage (or
only part of it) gets the missing counts estimated, and ``Usage.estimated`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from flows.data.records import Usage

__all__ = ["CHARS_PER_TOKEN", "estimate_tokens", "split_usage", "usage_of"]

CHARS_PER_TOKEN = 4
"""Characters per token of an estimate: OpenAI's rule of thumb for English text ("one token is
about 4 characters", help.openai.com, "What are tokens and how to count them?")."""


def _reported(value: Any) -> int | None:
    """A token count as sent: a non-negative whole number, else None (null, text, garbage)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def estimate_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters at :data:`CHARS_PER_TOKEN`, rounded up."""
    return math.ceil(chars / CHARS_PER_TOKEN)


def _prompt_chars(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)


def usage_of(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], text: str) -> Usage:
    """Token counts as the endpoint reported them, each missing one estimated.

    The estimates: prompt tokens = characters of the messages' contents / 4, completion tokens
    = characters of the answer / 4, each rounded up (:data:`CHARS_PER_TOKEN`).
    A prompt count of 0 is missing too (every request has a prompt), and so is a completion
    count of 0 for an answer that is not empty: servers that do not count send zeros.
    ``estimated`` is True when either count was estimated.
    """
    usage = body.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    prompt = _reported(usage.get("prompt_tokens")) or None
    completion = _reported(usage.get("completion_tokens"))
    if completion == 0 and text:
        completion = None
    return Usage(
        prompt_tokens=prompt if prompt is not None else estimate_tokens(_prompt_chars(messages)),
        completion_tokens=completion if completion is not None else estimate_tokens(len(text)),
        cached_tokens=_reported(details.get("cached_tokens")) or 0,
        estimated=prompt is None or completion is None,
    )


def split_usage(usages: list[Usage], sizes: list[int]) -> list[Usage]:
    """Each of the ``n`` answers of one request with its share of the request's usage.

    ``usages`` are the answers' usages as read (each the whole request's, or each answer's own
    estimate where the server sent none), ``sizes`` their characters. The prompt was read once:
    its tokens (and cached tokens) stay with the first answer. The completion tokens are shared
    in proportion to each answer's characters (equally when all are empty), the rounding's
    remainder going to the first, so the shares add up to the server's count; an estimated
    usage keeps each answer's own estimate.
    """
    if len(usages) < 2:
        return usages
    whole = usages[0]
    if whole.estimated:
        shares = [usage.completion_tokens for usage in usages]
    else:
        total = sum(sizes)
        shares = [
            (whole.completion_tokens * size) // total
            if total
            else whole.completion_tokens // len(sizes)
            for size in sizes
        ]
        shares[0] += whole.completion_tokens - sum(shares)
    return [
        Usage(
            prompt_tokens=whole.prompt_tokens if index == 0 else 0,
            completion_tokens=share,
            cached_tokens=whole.cached_tokens if index == 0 else 0,
            estimated=whole.estimated,
        )
        for index, share in enumerate(shares)
    ]
