"""The transport retry policy: tenacity owns retries, the openai SDK runs with ``max_retries=0``.

Retried: 408, 409, 429, 5xx, connection errors and timeouts, with jittered exponential backoff
that waits at least as long as the server's ``Retry-After``. Never retried: other 4xx (400, 401,
403, 404, 422). A 200 whose body is an error (:class:`ErrorAnswer`) counts as the status it
names, with no ``Retry-After`` (plain backoff); one that names no status is never retried.
Bounded twice: by attempts and by elapsed time; a ``Retry-After`` that would end past the
elapsed budget gives up at once instead of sleeping into certain failure.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from flows.config.run import RetryConfig

__all__ = [
    "CallTimeoutError",
    "ErrorAnswer",
    "build_retrying",
    "is_retryable",
    "retry_after_seconds",
]

RETRYABLE_STATUS = frozenset({408, 409, 429})


class CallTimeoutError(Exception):
    """One attempt ran past the per-call deadline (read timeouts alone reset on every chunk)."""


class ErrorAnswer(Exception):
    """A 200 answer whose body is an error object and no choices, as some gateways send.

    ``status`` is the HTTP status the error names (its ``code``, ``status`` or ``type``), or
    None when it names none; ``message`` is the server's words, not yet redacted.
    """

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def is_retryable(exc: BaseException) -> bool:
    """Transport and rate-limit failures are retried; answers the server meant are not."""
    if isinstance(exc, CallTimeoutError | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return _retryable_status(exc.status_code)
    if isinstance(exc, ErrorAnswer):
        return exc.status is not None and _retryable_status(exc.status)
    return False


def retry_after_seconds(exc: BaseException | None, now: float | None = None) -> float | None:
    """The server's requested wait from ``retry-after-ms`` or ``Retry-After`` (seconds or date)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither seconds nor an HTTP-date: ignore the header
        return None
    if parsed.tzinfo is None:  # "-0000" parses naive; HTTP-dates are always UTC
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))


def _outcome_error(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


def build_retrying(
    policy: RetryConfig,
    *,
    sleep: Callable[[float], Awaitable[Any]],
    rng: random.Random | None = None,
) -> AsyncRetrying:
    """A tenacity ``AsyncRetrying`` for one model call under ``policy``.

    ``sleep`` is injected so tests can record waits instead of sleeping.
    """
    rng = rng or random.Random()

    def backoff(state: RetryCallState) -> float:
        base = min(policy.backoff_max_s, policy.backoff_initial_s * 2 ** (state.attempt_number - 1))
        jittered = rng.uniform(0.5 * base, base)
        asked = retry_after_seconds(_outcome_error(state))
        if asked is not None:
            return max(jittered, min(asked, policy.retry_after_max_s))
        return jittered

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        elapsed = state.seconds_since_start or 0.0
        if elapsed >= policy.max_elapsed_s:
            return True
        # Give up at once when the server asks for more patience than the budget allows.
        asked = retry_after_seconds(_outcome_error(state))
        return asked is not None and (
            asked > policy.retry_after_max_s or elapsed + asked > policy.max_elapsed_s
        )

    return AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        stop=stop,
        wait=backoff,
        sleep=sleep,
        reraise=True,
    )
