"""Requests and tokens per minute for one endpoint: ``[endpoint] rpm``, ``tpm``, and the
provider's own word on its limit.

Each HTTP attempt first waits at the run's pause (set by the provider, below), then takes one
unit of the requests bucket and its estimated tokens from the tokens bucket
(:mod:`flows.llm.rate_buckets`: shared through Prefect when a Prefect API is configured, else
this process's). A request's tokens are estimated as its prompt's characters over the
characters per token seen so far, plus its ``max_tokens`` (times ``n``): the most its answer
may cost. After the answer, tokens its usage shows beyond the estimate are taken too, so the
bucket sees every token sent (tokens estimated but not used are not given back), and the
characters per token are calibrated from the reported prompt tokens.

The provider's word, in a run that sets rpm or tpm: an answer whose ``x-ratelimit-remaining-*``
headers say the limit is spent (:mod:`flows.llm.rate_headers`) pauses every request of the
run until its reset, and a 429 for its ``Retry-After`` (else the headers' reset, else
:data:`PAUSE_AFTER_429_S`), at most ``retry_after_max_s``. The refused request itself waits by
the retry policy, which honours the same Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import openai

from flows.config.run import EndpointConfig, RetryConfig
from flows.llm.endpoint_id import endpoint_identity
from flows.llm.rate_buckets import Bucket, Buckets, Kind, number, open_buckets
from flows.llm.rate_estimate import TokenEstimator
from flows.llm.rate_headers import RateHeaders
from flows.llm.retry import retry_after_seconds
from flows.llm.run_log import run_log
from flows.llm.usage import usage_of

__all__ = ["PAUSE_AFTER_429_S", "RateCall", "RateLimiter", "Ticket", "rate_limit_base"]

logger = logging.getLogger(__name__)

PAUSE_AFTER_429_S = 1.0
"""Seconds every request waits after a 429 that says neither Retry-After nor a reset."""
NOTABLE_WAIT_S = 1.0
"""Seconds into the run's first wait this long for the rate limit, a line says it waits."""
LONG_WAIT_S = 30.0
"""After that, only waits this long are logged, at most one line every QUIET_S seconds."""
QUIET_S = 60.0


def rate_limit_base(endpoint: EndpointConfig) -> str:
    """The shared limit's name: ``rate_limit_name``, else ``MODEL@ADDRESS`` from the model
    and the endpoint's identity (host, port and path; never the key, a password or a query).

    The Prefect limits are ``rpm:NAME`` and ``tpm:NAME``.
    """
    if endpoint.rate_limit_name:
        return endpoint.rate_limit_name
    address = endpoint_identity(endpoint).split("://", 1)[-1]
    return f"{_name_part(endpoint.model or '')}@{_name_part(address)}"


def _name_part(text: str) -> str:
    """``text`` with what a limit name may not hold (``/``, ``%``, spaces, ...) made ``-``."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._:@+=,-") else "-" for c in text)


@dataclass
class RateCall:
    """One model call across its attempts: the pause its own 429 set, which its retry (timed
    by the retry policy) does not wait for again."""

    own_pause: float | None = None


@dataclass(frozen=True)
class Ticket:
    """What one attempt took: its estimated tokens, the share taken, its prompt's characters."""

    estimate: int
    taken: int
    prompt_chars: int


_UNLIMITED = Ticket(0, 0, 0)
"""The ticket of a request in a run without rpm or tpm."""


class RateLimiter:
    """The rate limits of one client: the run's pause, and the rpm/tpm buckets if set."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        retry: RetryConfig,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.endpoint = endpoint
        self._pause_max_s = retry.retry_after_max_s
        self._sleep = sleep
        self.estimator = TokenEstimator()
        self.base = rate_limit_base(endpoint) if endpoint.rpm or endpoint.tpm else None
        limits: dict[Kind, tuple[str, int | None]] = {
            "requests": ("rpm", endpoint.rpm),
            "tokens": ("tpm", endpoint.tpm),
        }
        self._wanted = {
            kind: Bucket.per_minute_limit(f"{suffix}:{self.base}", per_minute)
            for kind, (suffix, per_minute) in limits.items()
            if per_minute
        }
        self._buckets: Buckets | None = None
        self._opening = asyncio.Lock()
        self.resume_at = 0.0  # time.monotonic() before which no request is sent
        self._logged: dict[str, float] = {}  # topic -> when its last line was logged

    async def before_send(self, body: Mapping[str, Any], call: RateCall) -> Ticket:
        """Wait until ``body`` may be sent: the pause, then its share of each bucket. Without
        rpm or tpm nothing is waited for, estimated or read (the path every request takes)."""
        if not self._wanted:
            return _UNLIMITED
        started = time.monotonic()
        await self._pause(call)
        estimate, chars = self.estimator.estimate(body)
        taken = 0
        if self._wanted:
            buckets = await self._open()
            takes = []
            if "requests" in self._wanted:
                takes.append(buckets.take("requests", 1))
            if "tokens" in self._wanted:
                taken = min(estimate, buckets.capacity("tokens"))
                takes.append(buckets.take("tokens", taken))
            await self._wait_for(asyncio.gather(*takes), buckets)
            await self._pause(call)  # one set while this request waited
            waited = time.monotonic() - started
            if waited >= LONG_WAIT_S and self._may_log("long", waited):
                run_log(
                    logger, logging.INFO, "a request waited %s s for the rate limit", number(waited)
                )
        return Ticket(estimate, taken, chars)

    async def _wait_for(self, takes: Awaitable[Any], buckets: Buckets) -> None:
        """Await ``takes``; the first time one lasts NOTABLE_WAIT_S, say so while it waits."""
        waiting = asyncio.ensure_future(takes)
        try:
            done, _ = await asyncio.wait({waiting}, timeout=NOTABLE_WAIT_S)
            if not done and self._may_log("pace", 0.0):
                where = (
                    "shared through Prefect" if buckets.shared else "counted in this process only"
                )
                limits = ", ".join(f"{b.name} = {b.per_minute:,}" for b in self._wanted.values())
                run_log(
                    logger,
                    logging.INFO,
                    "requests wait for the rate limit (%s per minute, %s): they are "
                    "paced to stay within it, not stuck",
                    limits,
                    where,
                )
            await waiting
        finally:
            if not waiting.done():  # this call was cancelled while it waited
                waiting.cancel()
                waiting.add_done_callback(_retrieved)

    async def after_answer(self, ticket: Ticket, body: Any, headers: Mapping[str, str]) -> None:
        """Learn from an answer: the provider's headers, then its tokens beyond the estimate."""
        if not self._wanted:
            return
        self._hold(RateHeaders.read(headers).pause(ticket.estimate))
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return
        # no messages given: a prompt count the server left out reads as 0, estimated below
        usage = usage_of(body, [], _answer_text(body["choices"]))
        if not usage.estimated:
            self.estimator.observe(
                ticket.prompt_chars, usage.prompt_tokens, usage.completion_tokens
            )
        if "tokens" in self._wanted and self._buckets is not None:
            prompt = usage.prompt_tokens or math.ceil(
                ticket.prompt_chars / self.estimator.chars_per_token
            )
            excess = prompt + usage.completion_tokens - ticket.taken
            while excess > 0:
                chunk = min(excess, self._buckets.capacity("tokens"))
                await self._buckets.take("tokens", chunk)
                excess -= chunk

    def refused(self, ticket: Ticket, exc: openai.APIStatusError, call: RateCall) -> None:
        """A refusal: a 429 pauses every request (its own retry is timed by the policy)."""
        if not self._wanted:
            return
        headers = RateHeaders.read(exc.response.headers)
        if exc.status_code != 429:
            self._hold(headers.pause(ticket.estimate))
            return
        asked = retry_after_seconds(exc)
        if asked is not None:
            pause: tuple[float, str] | None = (asked, "429 with Retry-After")
        else:
            pause = headers.pause(ticket.estimate) or (PAUSE_AFTER_429_S, "429")
        call.own_pause = self._hold(pause)

    def _hold(self, pause: tuple[float, str] | None) -> float | None:
        """Pause every request for ``pause`` seconds from now (at most retry_after_max_s).

        Only in a run that sets rpm or tpm: without them a refusal is the refused request's
        alone, retried by the retry policy as before rate limits existed.
        """
        if pause is None or pause[0] <= 0 or not self._wanted:
            return None
        seconds = min(pause[0], self._pause_max_s)
        self.resume_at = max(self.resume_at, time.monotonic() + seconds)
        if self._may_log("provider", seconds):
            run_log(
                logger,
                logging.WARNING,
                "%s says its rate limit is spent (%s): every request of this run waits %s s",
                self.endpoint.base_url,
                pause[1],
                number(seconds),
            )
        return self.resume_at

    async def _pause(self, call: RateCall) -> None:
        if call.own_pause is not None and call.own_pause == self.resume_at:
            return  # the retry policy already waited for it
        delay = self.resume_at - time.monotonic()
        if delay > 0:
            await self._sleep(delay)

    async def _open(self) -> Buckets:
        async with self._opening:
            if self._buckets is None:
                self._buckets = await open_buckets(self._wanted)
            return self._buckets

    def _may_log(self, topic: str, seconds: float) -> bool:
        """The first line of a topic; then one for a wait of LONG_WAIT_S or more, at most
        once every QUIET_S seconds."""
        now = time.monotonic()
        last = self._logged.get(topic)
        if last is not None and (seconds < LONG_WAIT_S or now - last < QUIET_S):
            return False
        self._logged[topic] = now
        return True


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Read a cancelled wait's outcome, so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _answer_text(choices: list[Any]) -> str:
    """The text of every choice, for an estimate of a usage the server did not send."""
    parts = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        parts.append(content if isinstance(content, str) else "")
    return "".join(parts)
