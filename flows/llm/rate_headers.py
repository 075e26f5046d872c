"""What a provider's answer says about its rate limit: when every request should wait.

OpenAI (and Groq, OpenRouter, Azure OpenAI and others that copy it) send on every answer,
per "Rate limits in headers" (platform.openai.com/docs/guides/rate-limits):

- ``x-ratelimit-remaining-requests`` / ``x-ratelimit-remaining-tokens``: requests and tokens
  left before the limit is hit (whole numbers);
- ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens``: the time until the limit is
  back to its full size, as a Go-style duration (``"1s"``, ``"6m0s"``, ``"20ms"``,
  ``"1m30.951s"``); Azure sends plain seconds (``"12"``), which are read too.

A negative or unreadable value means "not known" (Azure sends ``-1``) and changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RateHeaders", "parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Seconds of a reset header: a Go duration (``"6m0s"``, ``"20ms"``) or plain seconds.

    None for anything else (empty, negative, a date): an unknown reset is no reset.
    """
    text = (text or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _count(text: str | None) -> int | None:
    try:
        value = int((text or "").strip())
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass(frozen=True)
class RateHeaders:
    """The rate-limit headers of one answer; None where a header is absent or unreadable."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    @classmethod
    def read(cls, headers: Mapping[str, str]) -> RateHeaders:
        """The four headers from ``headers`` (an httpx headers object: any case)."""
        return cls(
            remaining_requests=_count(headers.get("x-ratelimit-remaining-requests")),
            remaining_tokens=_count(headers.get("x-ratelimit-remaining-tokens")),
            reset_requests_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
            reset_tokens_s=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )

    def pause(self, next_tokens: int) -> tuple[float, str] | None:
        """How long every request should wait now, and why; None when there is room.

        Requests wait when none is left, tokens when fewer are left than ``next_tokens`` (the
        size of a request like the one just answered), each until its reset. A spent limit
        with no reset sent pauses nothing: the provider's 429 will say how long.
        """
        waits = []
        if self.remaining_requests == 0 and self.reset_requests_s:
            waits.append((self.reset_requests_s, "x-ratelimit-remaining-requests: 0"))
        if (
            self.remaining_tokens is not None
            and self.remaining_tokens < next_tokens
            and self.reset_tokens_s
        ):
            waits.append(
                (self.reset_tokens_s, f"x-ratelimit-remaining-tokens: {self.remaining_tokens}")
            )
        return max(waits) if waits else None
