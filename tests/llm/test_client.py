"""The chat client and its retry policy, over real HTTP against the fake OpenAI server.

Sleeping is injected: a recorder keeps the waits the policy asked for and returns at once, so a
test of a 30-second Retry-After takes milliseconds.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import openai
import pytest
import pytest_asyncio
from pydantic import SecretStr

from flows.config.run import EndpointConfig, RetryConfig
from flows.llm.client import ChatClient
from flows.llm.retry import retry_after_seconds
from refine.errors import EndpointError, FatalEndpointError
from tests.fake_openai import FakeOpenAI, LogEntry, Reply

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Summarize: the cat sat on the mat."},
]


class SleepRecorder:
    """An injected ``sleep``: records each requested wait and returns immediately."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


MakeClient = Callable[..., ChatClient]


@pytest.fixture
def sleeper() -> SleepRecorder:
    return SleepRecorder()


@pytest_asyncio.fixture(loop_scope="function")  # the loop the tests run on
async def make_client(fake_server: FakeOpenAI, sleeper: SleepRecorder) -> AsyncIterator[MakeClient]:
    """Builds ChatClients on the fake server (or another ``base_url``); closes them after."""
    made: list[ChatClient] = []

    def make(*, max_in_flight: int = 4, base_url: str | None = None, **retry: Any) -> ChatClient:
        client = ChatClient(
            EndpointConfig(base_url=base_url or fake_server.base_url, model="m"),
            RetryConfig(**retry),
            SecretStr("sk-test-secret"),
            max_in_flight=max_in_flight,
            sleep=sleeper,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


# -- successful calls ------------------------------------------------------------------------


async def test_answer_usage_latency_and_what_the_server_saw(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    fake_server.set_latency(0.05)
    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    fake_server.script([Reply(content="A cat sat.", usage=usage)])

    completion = await make_client().complete(MESSAGES)

    assert completion.content == "A cat sat."
    assert completion.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 2)
    assert completion.latency_s >= 0.05
    assert completion.attempts == 1
    [entry] = fake_server.chat_requests()
    assert entry.headers["authorization"] == "Bearer sk-test-secret"
    assert entry.body["model"] == "m"
    assert entry.messages == MESSAGES
    assert entry.body["temperature"] == 0.7 and entry.body["max_tokens"] == 512


@pytest.mark.parametrize(
    ("reply", "content", "finish_reason"),
    [
        (Reply(content=""), "", "stop"),
        (Reply(content="A cat", finish_reason="length"), "A cat", "length"),
    ],
)
async def test_bad_outputs_come_back_as_they_are(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    reply: Reply,
    content: str,
    finish_reason: str,
) -> None:
    # Empty and truncated answers are the refinement loop's business, never a transport retry.
    fake_server.script([reply])
    completion = await make_client().complete(MESSAGES)
    assert (completion.content, completion.finish_reason) == (content, finish_reason)
    assert len(fake_server.chat_requests()) == 1 and sleeper.waits == []


async def test_null_content_reads_as_empty(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    body = (
        '{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
        '"message":{"role":"assistant","content":null},"finish_reason":"length"}]}'
    )
    fake_server.script([Reply(raw_body=body)])
    completion = await make_client().complete(MESSAGES)
    assert (completion.content, completion.finish_reason) == ("", "length")


# -- retried failures ------------------------------------------------------------------------


async def error_after_three_attempts(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder, reply: Reply
) -> EndpointError:
    """``reply`` to every attempt of a call allowed 3: the error it ends with, once checked that
    the server saw exactly 3 requests and the policy waited twice, within its backoff."""
    fake_server.script([reply] * 10)
    with pytest.raises(EndpointError) as info:
        await make_client(max_attempts=3, backoff_initial_s=0.5, backoff_max_s=0.8).complete(
            MESSAGES
        )
    assert not isinstance(info.value, FatalEndpointError)
    assert len(fake_server.chat_requests()) == 3
    assert len(sleeper.waits) == 2
    assert all(0.25 <= wait <= 0.8 for wait in sleeper.waits)
    return info.value


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409, 429])
async def test_retryable_status_uses_exactly_the_attempt_budget(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder, status: int
) -> None:
    reply = Reply(status=status, content="busy")
    error = await error_after_three_attempts(fake_server, make_client, sleeper, reply)
    assert error.status == status
    assert f"answered {status} after 3 attempt(s)" in str(error)
    assert "busy" in str(error)
    assert [e.status for e in fake_server.chat_requests()] == [status] * 3


async def test_retry_then_success_reports_attempts(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder
) -> None:
    fake_server.script([Reply(status=503), Reply(status=502), Reply(content="ok")])
    completion = await make_client(max_attempts=4).complete(MESSAGES)
    assert completion.content == "ok" and completion.attempts == 3
    assert [e.status for e in fake_server.chat_requests()] == [503, 502, 200]
    assert len(sleeper.waits) == 2


async def test_dropped_connections_are_retried_within_budget(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    fake_server.script([Reply(drop_connection=True)] * 10)
    with pytest.raises(EndpointError, match=r"cannot reach .* after 3 attempt\(s\)"):
        await make_client(max_attempts=3).complete(MESSAGES)
    assert len(fake_server.chat_requests()) == 3


async def test_refused_connection_is_retried_then_reported(make_client: MakeClient) -> None:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        client = make_client(base_url=url, max_attempts=3)
        with pytest.raises(EndpointError, match=r"cannot reach .* after 3 attempt\(s\)") as info:
            await client.complete(MESSAGES)
    assert info.value.url == url
    assert client.http_attempts == 3


async def test_retry_after_seconds_is_honoured(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder
) -> None:
    fake_server.script([Reply(status=429, headers={"Retry-After": "3"}), Reply(content="ok")])
    completion = await make_client(backoff_initial_s=0.1).complete(MESSAGES)
    assert completion.content == "ok"
    assert len(sleeper.waits) == 1 and sleeper.waits[0] >= 3
    assert len(fake_server.chat_requests()) == 2


async def test_retry_after_http_date_is_honoured(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder
) -> None:
    when = time.time() + 10
    date = email.utils.formatdate(when, usegmt=True)
    fake_server.script([Reply(status=429, headers={"Retry-After": date}), Reply(content="ok")])
    completion = await make_client(backoff_initial_s=0.1).complete(MESSAGES)
    # The header has whole seconds: the wait must last until then, measured from now at latest.
    deadline = int(when) - time.time()
    assert completion.content == "ok"
    assert len(sleeper.waits) == 1 and sleeper.waits[0] >= deadline > 8


@pytest.mark.parametrize(
    "retry",
    [
        {"max_elapsed_s": 10.0},  # Retry-After 30 s would end past the elapsed budget
        {"retry_after_max_s": 5.0},  # longer than we ever agree to wait
    ],
)
async def test_retry_after_past_the_budget_gives_up_at_once(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    retry: dict[str, float],
) -> None:
    fake_server.script([Reply(status=429, headers={"Retry-After": "30"})] * 5)
    with pytest.raises(EndpointError, match=r"answered 429 after 1 attempt\(s\)") as info:
        await make_client(max_attempts=5, **retry).complete(MESSAGES)
    assert info.value.status == 429
    assert len(fake_server.chat_requests()) == 1
    assert sleeper.waits == []


async def test_deadline_cuts_a_hanging_answer(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    fake_server.script([Reply(hang=True)] * 2)
    client = make_client(max_attempts=2, call_deadline_s=0.5)
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"after 2 attempt\(s\)"):
        await client.complete(MESSAGES)
    assert time.monotonic() - started < 0.5 * 2 + 1.0
    log = fake_server.chat_requests()
    assert len(log) == 2 and all(entry.status is None for entry in log)


# -- failures that are never retried ---------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
async def test_client_errors_are_tried_once(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder, status: int
) -> None:
    fake_server.script([Reply(status=status, content="context too long")])
    with pytest.raises(EndpointError) as info:
        await make_client(max_attempts=4).complete(MESSAGES)
    assert not isinstance(info.value, FatalEndpointError)
    assert info.value.status == status
    assert "context too long" in str(info.value)
    assert len(fake_server.chat_requests()) == 1 and sleeper.waits == []
    # Unlike a fatal error, the next call goes out again.
    fake_server.script([Reply(content="ok")])
    assert (await make_client().complete(MESSAGES)).content == "ok"


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "API key"), (403, "not allowed"), (404, "check --base-url and that model 'm'")],
)
async def test_fatal_status_stops_every_later_call(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    status: int,
    hint: str,
) -> None:
    fake_server.script([Reply(status=status, content="nope")])
    client = make_client(max_attempts=4)

    with pytest.raises(FatalEndpointError) as first:
        await client.complete(MESSAGES)
    assert first.value.status == status
    assert f"answered {status}" in str(first.value) and hint in str(first.value)
    assert "nope" in str(first.value)
    assert len(fake_server.chat_requests()) == 1 and sleeper.waits == []

    with pytest.raises(FatalEndpointError) as second:
        await client.complete(MESSAGES)
    assert str(second.value) == str(first.value)
    assert len(fake_server.chat_requests()) == 1


async def test_calls_waiting_for_a_slot_send_nothing_after_a_refusal(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    fake_server.set_latency(0.05)
    fake_server.fail_rate(401, 1.0)
    client = make_client(max_in_flight=2)
    results = await asyncio.gather(
        *(client.complete(MESSAGES) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, FatalEndpointError) for r in results)
    assert len(fake_server.chat_requests()) <= 2  # only those already on the wire


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"id": "c", "object": "chat.completion"}', "has no choices"),
        ('{"id": "c", "choices": []}', "has no choices"),
    ],
)
async def test_unusable_body_is_an_endpoint_error(
    fake_server: FakeOpenAI, make_client: MakeClient, body: str, match: str
) -> None:
    fake_server.script([Reply(raw_body=body)])
    with pytest.raises(EndpointError, match=match):
        await make_client().complete(MESSAGES)
    assert len(fake_server.chat_requests()) == 1


# -- concurrency -----------------------------------------------------------------------------


def _peak_overlap(log: list[LogEntry]) -> int:
    events: list[tuple[float, int]] = []
    for entry in log:
        assert entry.answered is not None
        events += [(entry.received, 1), (entry.answered, -1)]
    peak = current = 0
    for _, delta in sorted(events):  # an end sorts before a start at the same instant
        current += delta
        peak = max(peak, current)
    return peak


async def test_max_in_flight_caps_requests_at_the_server(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    fake_server.set_latency(0.05)
    client = make_client(max_in_flight=2)
    asks = [[{"role": "user", "content": f"question {n}"}] for n in range(8)]

    answers = await asyncio.gather(*(client.complete(messages) for messages in asks))

    assert [a.content.split(" ", 1)[1] for a in answers] == [f"question {n}" for n in range(8)]
    log = fake_server.chat_requests()
    assert len(log) == 8 and client.http_attempts == 8
    assert _peak_overlap(log) == 2


# -- Retry-After parsing ---------------------------------------------------------------------


def _status_error(headers: dict[str, str], status: int = 429) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    return openai.APIStatusError("rate limited", response=response, body=None)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms is more precise, wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": email.utils.formatdate(NOW + 42, usegmt=True)}, 42.0),
        ({"retry-after": email.utils.formatdate(NOW - 42, usegmt=True)}, 0.0),
        ({"retry-after": email.utils.formatdate(NOW + 7)}, 7.0),  # "-0000" zone: still UTC
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Mon, 99 Foo 2027 25:61:61 GMT"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    got = retry_after_seconds(_status_error(headers), now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_retry_after_needs_a_status_error() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds(ValueError("x")) is None


async def test_a_key_echoed_by_the_server_never_reaches_the_error(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    echoed = "Incorrect API key provided: sk-test-secret. Other token: sk-proj-abcdef123456"
    fake_server.script([Reply(status=401, content=echoed), Reply(status=400, content=echoed)])
    client = make_client()
    with pytest.raises(FatalEndpointError) as fatal:
        await client.complete(MESSAGES)
    assert "sk-test-secret" not in str(fatal.value) and "abcdef123456" not in str(fatal.value)
    assert "Incorrect API key provided: ***" in str(fatal.value)
    other = make_client()
    with pytest.raises(EndpointError) as bad:
        await other.complete(MESSAGES)
    assert "sk-test-secret" not in str(bad.value) and "sk-***" in str(bad.value)
