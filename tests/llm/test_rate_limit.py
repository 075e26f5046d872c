"""``[endpoint] rpm`` and ``tpm`` in one process, and the provider's pauses, over real HTTP.

What the fake server received is the measure: its log's ``received`` times and the tokens of
each request as the fake counts them (words of the prompt and of the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from flows.config.run import EndpointConfig, RetryConfig
from flows.llm.client import ChatClient
from flows.llm.rate_buckets import Bucket
from tests.fake_openai import FakeOpenAI, LogEntry, Reply
from tests.fake_openai._policy import completion_body, count_tokens, make_usage, prompt_tokens

WORDS = " ".join(f"word{i}" for i in range(48))
"""A prompt of about 50 fake tokens (words) and 6 characters a token; the fake's answer
repeats its last line, so a request counts about 100 tokens."""

MakeClient = Callable[..., ChatClient]
GENEROUS = {"rpm": 100_000}
"""A limit that never binds: the provider's pauses apply in a run that sets rpm or tpm."""

pytestmark = pytest.mark.usefixtures("no_prefect_api")


def tokens_of(entry: LogEntry) -> int:
    """The tokens of one logged request, as the fake counted its usage."""
    return prompt_tokens(entry.messages) + count_tokens(entry.content or "")


def worst_window(events: Sequence[tuple[float, int]], seconds: float) -> int:
    """The most that ``events`` (time, amount) put into any window of ``seconds``."""
    times = sorted(events)
    worst = 0
    for start, _ in times:
        worst = max(worst, sum(amount for t, amount in times if start <= t < start + seconds))
    return worst


def sent(server: FakeOpenAI, model: str, tokens: bool = False) -> list[tuple[float, int]]:
    """(received, 1 or its tokens) for each request to ``model``."""
    return [
        (e.received, tokens_of(e) if tokens else 1)
        for e in server.chat_requests()
        if e.body.get("model") == model
    ]


async def drive(
    client: ChatClient, seconds: float, workers: int, tag: str, *, cut_off: bool = True
) -> int:
    """``workers`` loops of calls for ``seconds``; the number of calls answered.

    ``cut_off``: calls still waiting at the end are cancelled; else no call starts after
    ``seconds`` and those under way finish (as a run ends: nothing left queued in Prefect's
    acquisition service, which a process drains on exit).
    """
    answered = 0
    end = time.monotonic() + seconds

    async def loop(worker: int) -> None:
        nonlocal answered
        i = 0
        while time.monotonic() < end:
            await client.complete([{"role": "user", "content": f"{tag} {worker} {i} {WORDS}"}])
            answered, i = answered + 1, i + 1

    try:
        async with asyncio.timeout(seconds if cut_off else None):
            await asyncio.gather(*(loop(w) for w in range(workers)))
    except TimeoutError:
        pass
    return answered


@pytest.fixture
def no_prefect_api() -> Iterator[None]:
    """No Prefect API configured: the buckets are this process's (aiolimiter)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest_asyncio.fixture(loop_scope="function")
async def make_client(fake_server: FakeOpenAI) -> AsyncIterator[MakeClient]:
    """ChatClients on the fake server (endpoint ``fields`` as given) with real sleeping."""
    async with contextlib.AsyncExitStack() as made:

        def make(
            *, max_in_flight: int = 8, retry: RetryConfig | None = None, **fields: Any
        ) -> ChatClient:
            endpoint = EndpointConfig(base_url=fake_server.base_url, **{"model": "m", **fields})
            key = SecretStr("sk-test-secret")
            client = ChatClient(endpoint, retry or RetryConfig(), key, max_in_flight=max_in_flight)
            made.push_async_callback(client.aclose)
            return client

        yield make


async def test_requests_and_tokens_keep_to_their_buckets_in_one_process(
    fake_server: FakeOpenAI, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.set_latency(0.02)
    by_requests = make_client(model="rpm-model", rpm=120)
    by_tokens = make_client(model="tpm-model", tpm=6000, max_tokens=10)
    seconds = 8.0
    with caplog.at_level(logging.INFO, logger="flows.llm.rate_limit"):
        await asyncio.gather(drive(by_requests, seconds, 8, "r"), drive(by_tokens, seconds, 8, "t"))

    requests, tokens = sent(fake_server, "rpm-model"), sent(fake_server, "tpm-model", True)
    rpm, tpm = Bucket.per_minute_limit("r", 120), Bucket.per_minute_limit("t", 6000)
    one_request = max(amount for _, amount in tokens)
    for window in (2.0, 4.0, seconds):  # the bucket's bound: a burst, then its decay
        assert worst_window(requests, window) <= rpm.capacity + rpm.decay_per_s * window + 1
        assert worst_window(tokens, window) <= tpm.capacity + tpm.decay_per_s * window + one_request
    # paced, not stalled: at least half of what the buckets allow went out
    assert len(requests) >= (rpm.capacity + rpm.decay_per_s * (seconds - 1)) / 2
    assert sum(a for _, a in tokens) >= (tpm.capacity + tpm.decay_per_s * (seconds - 1)) / 2
    # a prompt of words is about 6 characters a token; the estimate learnt it from usage
    assert 5 < by_tokens.rate.estimator.chars_per_token < 8
    # one line per limit that made requests wait, not one per request
    waits = [r.getMessage() for r in caplog.records if "for the rate limit" in r.getMessage()]
    assert len(waits) == 2, waits
    assert all("counted in this process only" in line for line in waits)
    assert all("not stuck" in line for line in waits)


def answer_with(headers: dict[str, str]) -> Reply:
    """A 200 answer carrying ``headers`` (the fake sends a reply's headers with a body given
    whole, not with its default answer)."""
    body = completion_body("m", "An answer.", "stop", make_usage(10, 3))
    return Reply(raw_body=body.decode(), headers=headers)


async def _first_then_others(
    server: FakeOpenAI, client: ChatClient, others: int = 3, after_s: float = 0.2
) -> tuple[list[LogEntry], list[LogEntry]]:
    """A call of "first", and ``after_s`` later ``others`` calls: the log of each."""
    first = asyncio.create_task(client.complete([{"role": "user", "content": "first"}]))
    await asyncio.sleep(after_s)
    await asyncio.gather(
        first,
        *(client.complete([{"role": "user", "content": f"other {i}"}]) for i in range(others)),
    )
    log = server.chat_requests()
    return [e for e in log if "first" in str(e.messages)], [
        e for e in log if "other" in str(e.messages)
    ]


@pytest.mark.parametrize(
    ("headers", "pause_s"),
    [
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}, 1.5),
        ({"x-ratelimit-remaining-tokens": "20", "x-ratelimit-reset-tokens": "1200ms"}, 1.2),
    ],
)
async def test_a_spent_limit_in_the_headers_pauses_every_request_until_its_reset(
    fake_server: FakeOpenAI, make_client: MakeClient, headers: dict[str, str], pause_s: float
) -> None:
    fake_server.script([answer_with(headers)], match="first")
    [first], others = await _first_then_others(fake_server, make_client(**GENEROUS))
    assert first.status == 200 and first.answered is not None
    assert len(others) == 3
    assert all(e.received >= first.answered + pause_s for e in others)


async def test_headers_with_room_left_pause_nothing(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    headers = {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "20s"}
    fake_server.script([answer_with(headers)], match="first")
    [first], others = await _first_then_others(fake_server, make_client(**GENEROUS))
    assert first.answered is not None
    assert all(e.received < first.answered + 0.5 for e in others)


@pytest.mark.parametrize(
    ("headers", "pause_s"),
    [
        ({"Retry-After": "1"}, 1.0),
        ({}, 1.0),  # PAUSE_AFTER_429_S
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.3s"}, 1.3),
    ],
)
async def test_a_429_pauses_every_request_and_the_refused_one_retries_after_it(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    pause_s: float,
) -> None:
    fake_server.script([Reply(status=429, headers=headers)], match="first")
    retry = RetryConfig(backoff_initial_s=0.05, backoff_max_s=0.1)
    with caplog.at_level(logging.WARNING, logger="flows.llm.rate_limit"):
        client = make_client(retry=retry, **GENEROUS)
        firsts, others = await _first_then_others(fake_server, client)
    refused, retried = firsts
    assert (refused.status, retried.status) == (429, 200) and refused.answered is not None
    assert all(e.received >= refused.answered + pause_s for e in others)
    if "Retry-After" in headers:  # the retry policy honours it for the refused call itself
        assert retried.received >= refused.answered + pause_s
    [line] = [r.getMessage() for r in caplog.records]
    assert "every request of this run waits" in line and "sk-test-secret" not in line


async def test_a_pause_is_at_most_retry_after_max_s(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    fake_server.script([answer_with(headers)], match="first")
    started = time.monotonic()
    [first], others = await _first_then_others(
        fake_server, make_client(retry=RetryConfig(retry_after_max_s=0.8), **GENEROUS)
    )
    assert first.answered is not None
    assert all(first.answered + 0.8 <= e.received < first.answered + 2 for e in others)
    assert time.monotonic() - started < 5


async def test_without_rpm_or_tpm_a_429_is_the_refused_request_s_alone(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    fake_server.script([Reply(status=429, headers={"Retry-After": "1"})], match="first")
    firsts, others = await _first_then_others(fake_server, make_client())
    refused, retried = firsts
    assert refused.answered is not None
    assert retried.received >= refused.answered + 1.0  # the retry policy honours it
    assert all(e.received < refused.answered + 0.5 for e in others)  # the others go on
