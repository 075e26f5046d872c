"""Model calls through the request cache: every request of a run (steps, critiques, judges).

Also keeps the run's token count, which the per-run token budget reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from flows.config.run import EndpointConfig
from flows.data.records import CachedAnswer, SideRequest
from flows.llm.cache import RequestCache, request_key
from flows.llm.client import Completion
from flows.llm.endpoint_id import EMBEDDED_MODEL, endpoint_identity
from flows.llm.finish import finish_problem

__all__ = [
    "EMBEDDED_MODEL",
    "Choice",
    "CompletionSource",
    "ModelCalls",
    "endpoint_identity",
    "reusable",
    "side_request",
]


@dataclass(frozen=True)
class Choice:
    """One sample of :meth:`ModelCalls.complete_choices`: the answer, whether it came from the
    cache, the seed its request carried (None: none), and whether it is a later choice of that
    request (so no request of its own; its usage is its share, see
    :func:`flows.llm.usage.split_usage`)."""

    completion: Completion
    cached: bool
    seed: int | None = None
    shared: bool = False


def reusable(content: str, finish_reason: str | None) -> bool:
    """Whether an answer may be kept in the cache and served from it.

    An empty answer or one that did not end normally (cut off, filtered, aborted) is a bad
    moment of the server, not its answer: a later run asks again rather than replay it.
    """
    return bool(content.strip()) and finish_problem(finish_reason) is None


def side_request(role: str, completion: Completion, cached: bool) -> SideRequest:
    """The record of a critique or judge request."""
    return SideRequest(
        role=role,  # type: ignore[arg-type]
        text=completion.content,
        usage=completion.usage,
        latency_s=round(completion.latency_s, 4),
        cached=cached,
        attempts=completion.attempts,
    )


class CompletionSource(Protocol):
    """What answers a run's requests: :class:`~flows.llm.client.ChatClient` online, or
    :class:`~flows.llm.batch_client.BatchingClient` through a Batch API."""

    @property
    def http_attempts(self) -> int: ...

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        logprobs: bool = False,
        sampling: dict[str, Any] | None = None,
    ) -> Completion: ...

    async def complete_choices(
        self,
        messages: list[dict[str, str]],
        n: int,
        *,
        logprobs: bool = False,
        sampling: dict[str, Any] | None = None,
    ) -> list[Completion]: ...


class ModelCalls:
    """Sends requests, or answers them from the cache; counts hits and tokens.

    Tokens are counted as recorded, cached answers included, so a rerun from the cache takes
    the same path through the token budget as the run that filled it.
    """

    def __init__(
        self,
        client: CompletionSource,
        cache: RequestCache | None,
        endpoint: EndpointConfig,
        *,
        logprobs: bool = False,
    ) -> None:
        self.client = client
        self.cache = cache
        self.endpoint = endpoint
        self.endpoint_id = endpoint_identity(endpoint)
        self.logprobs = logprobs
        self.cache_hits = 0
        self.tokens = 0

    async def complete(
        self,
        messages: list[dict[str, str]],
        step: int,
        role: str = "step",
        *,
        sample: int = 0,
        temperature: float | None = None,
        seed: int | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> tuple[Completion, bool]:
        """The answer to ``messages`` and whether it came from the cache.

        ``role`` tells a step's request from a critique or judge request of the same step in
        the cache key; logprobs are asked for (and keyed) only for steps of a run that needs
        them. ``sample`` > 0 asks again for another answer to the same messages, at
        ``temperature`` when given and with the seed moved by ``sample`` (when the run sets
        one): its index is part of the cache key, so samples are never confused and a re-run
        gets each one back from the cache. ``seed`` sets the request's seed outright (a
        best-of-N candidate's, see :meth:`sample_seed`).

        ``keep`` says, of an answer's text, whether it is worth keeping: one it refuses (an
        answer that post-processing leaves empty, say) is neither written to the cache nor
        served from it, beside what :func:`reusable` refuses, so a retry asks again instead of
        replaying it.
        """
        logprobs = self.logprobs and role == "step"
        sampling = self.endpoint.sampling()
        if temperature is not None:
            sampling["temperature"] = temperature
        if seed is not None:
            sampling["seed"] = seed
        elif sample and self.endpoint.seed is not None:
            sampling["seed"] = self.endpoint.seed + sample
        key = self._key(messages, step, role, sample, sampling, logprobs=logprobs)
        if (hit := self._cached(key, keep)) is not None:
            return hit, True
        completion = await self.client.complete(messages, logprobs=logprobs, sampling=sampling)
        self._keep(key, completion, keep)
        return completion, completion.attempts == 0  # 0: answered by an identical request

    async def complete_choices(
        self,
        messages: list[dict[str, str]],
        step: int,
        n: int,
        *,
        keep: Callable[[str], bool] | None = None,
    ) -> list[Choice | None]:
        """Up to ``n`` samples of a step's ``messages``, as the ``n`` choices of one request.

        Each choice is cached under its own sample index (a key of its own, marked as drawn
        with ``n``), so a re-run gets each back in its place. Only when the cache holds none of
        them is the one request sent. The list has a None for each sample neither gave (some
        were cached, as when ``samples`` grew since the last run, or the server sent fewer
        choices than asked, as one that ignores ``n`` does): the caller asks those one request
        each with a seed of their own (:meth:`sample_seed`), since a second ``n`` request with
        the same sampling fields would repeat the first one's choices.

        Raises:
            EndpointError: the one request failed (after its retries).
        """
        sampling = self.endpoint.sampling()
        keys = [
            self._key(
                messages, step, "step", i, sampling, logprobs=self.logprobs, drawn_with_n=True
            )
            for i in range(n)
        ]
        seed = self.endpoint.seed  # what the one request carries, for all of its choices
        found: list[Choice | None] = [None] * n
        for index, key in enumerate(keys):
            if (hit := self._cached(key, keep)) is not None:  # a later choice of one request
                found[index] = Choice(hit, True, seed=seed, shared=index > 0)
        if not any(found):
            answers = await self.client.complete_choices(
                messages, n, logprobs=self.logprobs, sampling=sampling
            )
            for index, completion in enumerate(answers[:n]):
                self._keep(keys[index], completion, keep)
                free = completion.attempts == 0  # answered by an identical request's answer
                found[index] = Choice(completion, free, seed=seed, shared=index > 0)
        return found

    def sample_seed(self, index: int) -> int:
        """The seed of a step's candidate ``index`` drawn by its own request: the endpoint's
        ``seed`` (0 when unset) plus the index, so N candidates carry N distinct seeds."""
        return (self.endpoint.seed or 0) + index

    def _key(
        self,
        messages: list[dict[str, str]],
        step: int,
        role: str,
        sample: int,
        sampling: dict[str, Any],
        *,
        logprobs: bool = False,
        drawn_with_n: bool = False,
    ) -> str:
        request: dict[str, Any] = {
            "endpoint": self.endpoint_id,
            "model": self.endpoint.model,
            "messages": messages,
            "sampling": sampling,
            "extra_body": self.endpoint.extra_body,
            "step": step,
            "sample": sample,
        }
        if role != "step":
            request["role"] = role
        if logprobs:
            request["logprobs"] = True
        if drawn_with_n:
            request["drawn_with"] = "n"
        return request_key(request)

    def _keep(self, key: str, completion: Completion, keep: Callable[[str], bool] | None) -> None:
        """Count a fresh answer's tokens and cache it if worth keeping."""
        self.tokens += completion.usage.tokens
        if self.cache is not None and _kept(completion.content, completion.finish_reason, keep):
            answer = CachedAnswer(
                content=completion.content,
                finish_reason=completion.finish_reason,
                usage=completion.usage,
                token_logprobs=(
                    None if completion.token_logprobs is None else list(completion.token_logprobs)
                ),
            )
            self.cache.put(key, answer.model_dump())

    def _cached(self, key: str, keep: Callable[[str], bool] | None) -> Completion | None:
        """The cached answer for ``key``, counted as a hit; an entry of the wrong shape is a
        miss, never served, and so is an unusable answer that an earlier release wrote (see
        :func:`reusable`) or one that ``keep`` refuses."""
        raw = self.cache.get(key) if self.cache is not None else None
        if raw is None:
            return None
        try:
            hit = CachedAnswer.model_validate(raw)
        except ValidationError:
            return None
        if not _kept(hit.content, hit.finish_reason, keep):
            return None
        self.cache_hits += 1
        self.tokens += hit.usage.tokens
        return Completion(
            content=hit.content,
            finish_reason=hit.finish_reason,
            usage=hit.usage,
            latency_s=0.0,
            attempts=0,
            token_logprobs=tuple(hit.token_logprobs) if hit.token_logprobs else None,
        )


def _kept(content: str, finish_reason: str | None, keep: Callable[[str], bool] | None) -> bool:
    """Whether an answer may be in the cache: :func:`reusable`, and worth keeping to ``keep``."""
    return reusable(content, finish_reason) and (keep is None or keep(content))
