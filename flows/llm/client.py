"""The OpenAI-compatible chat client: one call = retries under a deadline, usage and latency.

The SDK's own retries are off (``max_retries=0``) so the tenacity policy in :mod:`flows.llm.retry`
is the single owner of transport retries. Requests in flight are capped by one semaphore shared
by the whole run; it is held only while a request is on the wire, never during a backoff sleep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from pydantic import SecretStr

from flows.config.run import EndpointConfig, RetryConfig
from flows.data.records import Usage
from flows.llm.answer import (
    UnusableAnswer,
    answer_text,
    decode_body,
    quote_body,
    raise_if_error,
    token_logprobs,
)
from flows.llm.rate_limit import RateCall, RateLimiter
from flows.llm.redact import redact
from flows.llm.retry import (
    CallTimeoutError,
    ErrorAnswer,
    build_retrying,
    is_retryable,
    retry_after_seconds,
)
from flows.llm.slots import prefect_slot
from flows.llm.usage import CHARS_PER_TOKEN, split_usage, usage_of
from refine.errors import EndpointError, FatalEndpointError

__all__ = ["ChatClient", "Completion"]

logger = logging.getLogger(__name__)

Message = dict[str, str]
FATAL_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not found"}


@dataclass(frozen=True)
class Completion:
    """What one successful call returned, and what it took to get it."""

    content: str
    finish_reason: str | None
    usage: Usage
    latency_s: float  # the answering attempt's time on the wire
    attempts: int
    token_logprobs: tuple[float, ...] | None = None  # only when asked for (``logprobs=True``)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    text = exc.response.text if exc.response is not None else ""
    return text[:300] or exc.message


class ChatClient:
    """Calls one chat endpoint for a whole run; a 401/403/404 is remembered and stops all calls."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        retry: RetryConfig,
        api_key: SecretStr | None,
        *,
        max_in_flight: int,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        endpoint.require_target()
        self.endpoint = endpoint
        self.retry = retry
        self._sleep = sleep
        self._limiter = asyncio.Semaphore(max_in_flight)
        self.rate = RateLimiter(endpoint, retry, sleep)  # rpm, tpm and the provider's pauses
        self._fatal: FatalEndpointError | None = None
        self.http_attempts = 0
        self._warned_estimate = False  # the run's one warning that usage is estimated
        self._secret = api_key.get_secret_value() if api_key else None
        self._sdk = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            # Local servers need no key, but the SDK insists on one; this placeholder is no secret.
            api_key=api_key.get_secret_value() if api_key else "no-key",
            max_retries=0,
            timeout=openai.Timeout(retry.call_deadline_s, connect=retry.connect_timeout_s),
        )

    async def complete(
        self,
        messages: list[Message],
        *,
        logprobs: bool = False,
        sampling: dict[str, Any] | None = None,
    ) -> Completion:
        """One chat completion under the retry policy; raises EndpointError when it gives up.

        ``logprobs`` asks the endpoint for each answer token's log-probability (the ``loglik``
        reward needs them; some servers answer much slower with them, so only then).
        ``sampling`` replaces the endpoint's sampling fields (temperature, seed, ...) for this
        request: a second sample of the same messages.
        """
        response, on_wire, attempts = await self._answer(messages, logprobs, sampling)
        return self.completion_of(response, messages, on_wire, attempts)

    async def complete_choices(
        self,
        messages: list[Message],
        n: int,
        *,
        logprobs: bool = False,
        sampling: dict[str, Any] | None = None,
    ) -> list[Completion]:
        """N answers to ``messages`` in one request (``n``, for endpoints that honour it).

        Returns up to ``n`` completions in the order of the choices' ``index``; fewer when the
        server sent fewer (one that ignores ``n`` sends one). The request's usage is split: the
        prompt's tokens (read once) go to the first choice, and the completion tokens are
        shared in proportion to each choice's characters, so the sum is the server's count.
        Raises EndpointError as :meth:`complete` does.
        """
        fields = {**(self.endpoint.sampling() if sampling is None else sampling), "n": n}
        response, on_wire, attempts = await self._answer(messages, logprobs, fields)
        return self.choices_of(response, messages, n, on_wire, attempts)

    def choices_of(
        self, response: Any, messages: list[Message], n: int, latency_s: float, attempts: int
    ) -> list[Completion]:
        """Up to ``n`` completions of an answer to a request with ``n``, as
        :meth:`complete_choices` returns them (an online answer or a batch output line).
        Raises EndpointError when the answer holds none."""
        on_wire = latency_s
        choices = response.get("choices") if isinstance(response, dict) else None
        if not isinstance(choices, list) or not choices:
            return [self.completion_of(response, messages, on_wire, attempts)]  # raises, saying why
        ordered = sorted(
            (c for c in choices if isinstance(c, dict)),
            key=lambda c: index if isinstance(index := c.get("index"), int) else 0,
        )[:n]
        answers = [
            self.completion_of({**response, "choices": [choice]}, messages, on_wire, attempts)
            for choice in ordered
        ]
        shares = split_usage([a.usage for a in answers], [len(a.content) for a in answers])
        return [
            dataclasses.replace(answer, usage=usage)
            for answer, usage in zip(answers, shares, strict=True)
        ]

    async def _answer(
        self, messages: list[Message], logprobs: bool, sampling: dict[str, Any] | None
    ) -> tuple[Any, float, int]:
        """One call under the retry policy: the answer's body, its time on the wire, attempts."""
        if self._fatal is not None:
            raise self._fatal
        attempts = 0
        call = RateCall()  # the pause its own 429 sets is timed by the retry policy
        try:
            async for attempt in build_retrying(self.retry, sleep=self._sleep):
                with attempt:
                    attempts += 1
                    response, on_wire = await self._attempt(messages, logprobs, sampling, call)
                    raise_if_error(response)  # inside the attempt: the policy may retry it
        except openai.APIStatusError as exc:
            raise self._http_error(exc, attempts) from None
        except ErrorAnswer as exc:
            raise self._error_answer(exc, attempts) from None
        except openai.APIConnectionError as exc:
            raise EndpointError(
                f"cannot reach {self.endpoint.base_url} after {attempts} attempt(s): {exc.message}",
                url=self.endpoint.base_url,
            ) from None
        except CallTimeoutError as exc:
            raise EndpointError(f"{exc} (after {attempts} attempt(s))") from None
        except json.JSONDecodeError as exc:  # a proxy's HTML page or a torn body, sent as a 200
            # The request is never streamed, so a server-sent-events body (``data: ...``, an
            # error event inside it) lands here too: quoting its start makes that plain.
            start = redact(exc.doc[:120], self._secret)
            raise EndpointError(
                f"answer from {self.endpoint.base_url} is not valid JSON ({exc}); "
                f"it begins {start!r}"
            ) from None
        except openai.OpenAIError as exc:
            message = redact(str(exc), self._secret)
            raise EndpointError(
                f"unusable answer from {self.endpoint.base_url}: {message}"
            ) from None
        return response, on_wire, attempts

    async def _attempt(
        self,
        messages: list[Message],
        logprobs: bool,
        sampling: dict[str, Any] | None,
        call: RateCall | None = None,
    ) -> tuple[Any, float]:
        """One HTTP request and its time on the wire (time queued for a slot not counted).

        Waits in turn for a free in-flight slot, the global concurrency limit's slot and the
        rate limits (:mod:`flows.llm.rate_limit`), the last right before sending so the
        bucket's time is the server's; an answer's usage and headers go back to the limits.
        """
        call = call or RateCall()
        body = self.request_body(messages, logprobs, sampling)
        async with self._limiter:
            if self._fatal is not None:  # refused while this call waited for a slot
                raise self._fatal
            self.http_attempts += 1
            async with self._global_slot():
                ticket = await self.rate.before_send(body, call)
                try:
                    raw, on_wire = await self._post(body)
                except openai.APIStatusError as exc:
                    self.rate.refused(ticket, exc, call)
                    raise
                answer = decode_body(raw.content)
        await self.rate.after_answer(ticket, answer, raw.headers)
        return answer, on_wire

    async def _post(self, body: dict[str, Any]) -> tuple[httpx2.Response, float]:
        """The request on the wire within the call's deadline: the raw answer and its time."""
        deadline = self.retry.call_deadline_s
        try:
            async with asyncio.timeout(deadline):
                # The SDK's documented low-level ``post``: ``chat.completions.create`` first
                # walks the messages through its TypedDict transform, which cost about
                # 1.6 ms of CPU per request here and changes nothing in a chat body. The
                # raw answer is read as plain JSON: building the SDK's pydantic models
                # cost another 0.3 ms a request, for the four fields we keep.
                started = time.perf_counter()
                raw = await self._sdk.post("/chat/completions", body=body, cast_to=httpx2.Response)
                return raw, time.perf_counter() - started
        except TimeoutError:
            raise CallTimeoutError(
                f"no answer from {self.endpoint.base_url} within the {deadline:g} s deadline"
            ) from None

    def _global_slot(self) -> AbstractAsyncContextManager[object]:
        """A slot of the endpoint's Prefect global concurrency limit, when one is named.

        Like the local semaphore, waiting for it is not time on the wire, so the call's
        deadline starts after it; the wait itself is bounded by ``max_elapsed_s``.
        """
        if self.endpoint.global_limit is None:
            return nullcontext()
        return prefect_slot(self.endpoint.global_limit, self.retry.max_elapsed_s)

    def request_body(
        self, messages: list[Message], logprobs: bool, sampling: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The chat request's JSON body, as sent online and written into a batch input file."""
        fields = self.endpoint.sampling() if sampling is None else sampling
        body: dict[str, Any] = {**self.endpoint.extra_body, **fields}
        body.update(model=self.endpoint.model, messages=messages)
        if logprobs:
            body["logprobs"] = True
        return body

    def _status_error(
        self, status: int, message: str, attempts: int, answered: str | None = None
    ) -> EndpointError:
        """The error for a refusal with ``status``; 401/403/404 also stop every later call.

        ``answered`` says how the status came when not as the HTTP status (inside a 200).
        """
        url = self.endpoint.base_url
        answered = answered or f"answered {status}"
        if status in FATAL_STATUS:
            hint = {
                401: "check the API key (OPENAI_API_KEY or [endpoint] api_key)",
                403: "the key is not allowed to use this model or endpoint",
                404: f"check --base-url and that model {self.endpoint.model!r} is served there",
            }[status]
            fatal = FatalEndpointError(
                f"{url} {answered} {FATAL_STATUS[status]}: {message}; {hint}",
                status=status,
                url=url,
            )
            self._fatal = fatal
            return fatal
        return EndpointError(
            f"{url} {answered} after {attempts} attempt(s): {message}", status=status, url=url
        )

    def _http_error(self, exc: openai.APIStatusError, attempts: int) -> EndpointError:
        """An HTTP error status: its error, quoting the server and a Retry-After past budget."""
        message = redact(_server_message(exc), self._secret)
        asked = retry_after_seconds(exc)
        if asked is not None and is_retryable(exc) and asked > self._retry_after_budget():
            message += (
                f"; it asked to retry after {asked:g} s, more than the retry budget allows "
                f"(retry_after_max_s = {self.retry.retry_after_max_s:g}, "
                f"max_elapsed_s = {self.retry.max_elapsed_s:g})"
            )
        return self._status_error(exc.status_code, message, attempts)

    def _error_answer(self, exc: ErrorAnswer, attempts: int) -> EndpointError:
        """A 200 whose body is an error: the error of the status it names, quoting it."""
        message = redact(exc.message, self._secret)
        if exc.status is None:
            return EndpointError(
                f"{self.endpoint.base_url} answered 200 with an error in the body "
                f"after {attempts} attempt(s): {message}",
                url=self.endpoint.base_url,
            )
        answered = f"answered 200 with error {exc.status} in the body"
        return self._status_error(exc.status, message, attempts, answered)

    def _retry_after_budget(self) -> float:
        return min(self.retry.retry_after_max_s, self.retry.max_elapsed_s)

    def completion_of(
        self, body: Any, messages: list[Message], latency_s: float, attempts: int
    ) -> Completion:
        """The fields we keep from a chat completion body, checked as the SDK's models would
        (an online answer, or one line of a batch output file).

        Raises EndpointError when the body holds no usable answer, saying what it holds.
        """
        url = self.endpoint.base_url
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices, list):
            start = redact(quote_body(body, 120), self._secret)
            raise EndpointError(f"answer from {url} has no choices; it begins {start!r}")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise EndpointError(f"unusable answer from {url}: choices[0] is not an object")
        try:
            content = answer_text(choice.get("message"))  # a message not an object is refused
        except UnusableAnswer as exc:
            reason = redact(str(exc), self._secret)
            raise EndpointError(f"unusable answer from {url}: {reason}") from None
        finish_reason = choice.get("finish_reason")
        return Completion(
            content=content,
            # a reason of another type is still a reason, never "none sent" (which reads as a
            # normal end): its text makes it an unknown, unusable finish
            finish_reason=None if finish_reason is None else str(finish_reason),
            usage=self._usage(body, messages, content),
            latency_s=latency_s,
            attempts=attempts,
            token_logprobs=token_logprobs(choice),
        )

    def _usage(self, body: dict[str, Any], messages: list[Message], content: str) -> Usage:
        """The answer's usage; the first estimated one of the run says so in a warning."""
        usage = usage_of(body, messages, content)
        if usage.estimated and not self._warned_estimate:
            self._warned_estimate = True
            logger.warning(
                "%s reported no token usage (or only part of it): token counts and the token "
                "budgets use an estimate of 1 token per %d characters; records mark it "
                "with usage.estimated",
                self.endpoint.base_url,
                CHARS_PER_TOKEN,
            )
        return usage

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._sdk.close()
