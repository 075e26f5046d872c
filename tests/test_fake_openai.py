"""The fake OpenAI server, exercised over real HTTP with the real openai SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageParam

import tests.fake_openai as fake_openai
from tests.fake_openai import FakeOpenAI, FakeOpenAIControl, Reply, default_answer

ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture(loop_scope="function")  # the loop the tests run on, not the session's
async def client(fake_server: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake_server.base_url, api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


def _user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


async def _ask(client: openai.AsyncOpenAI, text: str) -> str:
    response = await client.chat.completions.create(model="gpt-test", messages=_user(text))
    return response.choices[0].message.content or ""


def test_public_names_are_all() -> None:
    public = {name for name in vars(fake_openai) if not name.startswith("_")}
    assert set(fake_openai.__all__) == public


async def test_default_answer_is_deterministic_and_shaped_like_openai(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    messages = _user("Question: 2+2?\nAnswer in one word.\n\n")
    first = await client.chat.completions.create(model="any-model", messages=messages)
    again = await _ask(client, "Question: 2+2?\nAnswer in one word.\n\n")
    other = await _ask(client, "Something else")

    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    expected = f"draft-{digest} Answer in one word."
    assert first.choices[0].message.content == expected == again
    assert default_answer(messages) == expected
    assert other != expected and other.endswith(" Something else")
    assert first.object == "chat.completion" and first.model == "any-model"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (8, 5)
    assert first.usage.total_tokens == 13
    assert first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0

    log = fake_server.chat_requests()
    assert [e.content for e in log] == [expected, expected, other]
    assert {e.headers["authorization"] for e in log} == {"Bearer sk-test"}
    assert log[0].messages == messages and log[0].status == 200 and not log[0].scripted
    assert log[0].answered is not None and log[0].answered >= log[0].received


async def test_models_lists_the_fake_model(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    models = [m.id async for m in client.models.list()]
    assert models == ["fake-model"]
    assert [(e.method, e.path, e.status) for e in fake_server.requests] == [
        ("GET", "/v1/models", 200)
    ]


async def test_scripts_answer_by_match_in_fifo_order(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_server.script([Reply(content="alpha-1"), Reply(content="alpha-2")], match="alpha")
    fake_server.script([{"content": "anything", "finish_reason": "length"}])

    answers = [await _ask(client, text) for text in ("beta", "alpha", "alpha", "alpha")]

    assert answers[:3] == ["anything", "alpha-1", "alpha-2"]
    assert answers[3] == default_answer(_user("alpha"))
    log = fake_server.chat_requests()
    assert [e.scripted for e in log] == [True, True, True, False]
    assert [e.content for e in log] == answers


async def test_error_status_and_retry_after_reach_the_sdk(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_server.script([Reply(status=429, headers={"Retry-After": "1"}, content="slow down")])

    with pytest.raises(openai.RateLimitError) as caught:
        await _ask(client, "hi")

    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body == {
        "message": "slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert [e.status for e in fake_server.chat_requests()] == [429]


async def test_raw_body_is_sent_verbatim(fake_server: FakeOpenAI) -> None:
    fake_server.script([Reply(raw_body='{"choices": [ broken')])
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{fake_server.base_url}/chat/completions",
            json={"model": "m", "messages": _user("hi")},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"choices": [ broken'


async def test_unparseable_request_is_logged_as_text(fake_server: FakeOpenAI) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{fake_server.base_url}/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert [(e.body, e.status) for e in fake_server.requests] == [("{nope", 400)]


async def test_latency_and_token_rate_delay_answers(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_server.set_latency(0.2)
    started = time.monotonic()
    await _ask(client, "slow")
    assert time.monotonic() - started >= 0.2

    fake_server.set_latency(0.0, token_rate=20)  # the answer has 2 words: 0.1 s
    fake_server.script([Reply(content="two words")])
    started = time.monotonic()
    assert await _ask(client, "paced") == "two words"
    assert time.monotonic() - started >= 0.1
    first, second = fake_server.chat_requests()
    assert first.answered is not None and first.answered - first.received >= 0.2
    assert second.answered is not None and second.answered - second.received >= 0.1


async def test_stream_carries_content_and_final_usage(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_server.script([Reply(content="one two three four", dribble_seconds=0.1)])
    stream = await client.chat.completions.create(
        model="m", messages=_user("s"), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    (entry,) = fake_server.chat_requests()
    assert entry.stream and entry.content == "one two three four"
    assert entry.answered is not None and entry.answered - entry.received >= 0.1


async def test_stream_error_breaks_the_stream(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_server.script([Reply(content="a b c d", stream_error="overloaded")])
    stream = await client.chat.completions.create(model="m", messages=_user("s"), stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError, match="overloaded"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a b "
    assert fake_server.chat_requests()[0].content == "a b "


async def test_fail_rate_is_roughly_the_fraction_and_reproducible(
    fake_server: FakeOpenAI,
) -> None:
    async def pattern() -> list[int]:
        async with httpx2.AsyncClient(base_url=fake_server.base_url) as http:
            body = {"model": "m", "messages": _user("x")}
            return [
                (await http.post("/chat/completions", json=body)).status_code for _ in range(200)
            ]

    fake_server.fail_rate(429, 0.5, headers={"Retry-After": "0"}, seed=7)
    first = await pattern()
    fake_server.fail_rate(429, 0.5, headers={"Retry-After": "0"}, seed=7)
    second = await pattern()

    assert set(first) == {200, 429}
    assert 70 <= first.count(429) <= 130
    assert first == second
    assert [e.status for e in fake_server.chat_requests()] == first + second


async def test_dropped_connection_is_a_connection_error(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake_server.script([Reply(drop_connection=True)])
    with pytest.raises(openai.APIConnectionError):
        await _ask(client, "drop")
    (entry,) = fake_server.chat_requests()
    assert entry.status is None and entry.answered is not None
    assert await _ask(client, "after") == default_answer(_user("after"))


async def test_hang_is_cut_by_client_timeout_and_stop_is_fast() -> None:
    server = FakeOpenAI().start()
    try:
        server.script([Reply(hang=True), Reply(hang=True)])
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-test", max_retries=0
        ) as client:
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                await client.with_options(timeout=0.3).chat.completions.create(
                    model="m", messages=_user("hang")
                )
            assert time.monotonic() - started < 2

            pending = asyncio.create_task(_ask(client.with_options(timeout=30), "hang again"))
            while len(server.chat_requests()) < 2:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            assert time.monotonic() - started < 2
            with pytest.raises(openai.APIConnectionError):
                await pending
    finally:
        server.stop()
    assert [(e.status, e.answered) for e in server.chat_requests()] == [(None, None)] * 2


async def test_control_client_programs_an_in_process_server(
    fake_server: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    control = FakeOpenAIControl(fake_server.base_url)
    control.script([Reply(content="via control", delay=0.05)], match="ctl")
    assert await _ask(client, "ctl") == "via control"
    assert control.requests == fake_server.requests
    assert control.chat_requests()[0].scripted

    control.clear_log()
    assert control.requests == []
    control.fail_rate(503, 1.0)
    with pytest.raises(openai.InternalServerError):
        await _ask(client, "x")
    control.reset()
    assert control.requests == []
    assert await _ask(client, "x") == default_answer(_user("x"))


def test_control_rejects_unknown_settings(fake_server: FakeOpenAI) -> None:
    request = urllib.request.Request(
        fake_server.base_url.removesuffix("/v1") + "/_control/config",
        data=b'{"latencyy": 1}',
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 422
    assert b"latencyy" in caught.value.read()


@pytest.fixture
def server_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    command = [sys.executable, "-m", "tests.fake_openai", "--port", "0", "--latency-ms", "10"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 15)
            line = process.stdout.readline().strip() if ready else ""
            prefix = "FAKE_OPENAI_BASE_URL="
            assert line.startswith(prefix), f"no base URL line, got {line!r}"
            yield process, line.removeprefix(prefix)
        finally:
            if process.poll() is None:
                process.kill()


async def test_out_of_process_server_is_scriptable_and_stops_on_sigterm(
    server_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, base_url = server_process
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
    control = FakeOpenAIControl(base_url)
    control.script([Reply(content="from afar")])

    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-remote", max_retries=0) as sdk:
        started = time.monotonic()
        assert await _ask(sdk, "hello") == "from afar"
        assert time.monotonic() - started >= 0.01

    (entry,) = control.chat_requests()
    assert entry.headers["authorization"] == "Bearer sk-remote"
    assert entry.scripted and entry.content == "from afar"

    process.send_signal(signal.SIGTERM)
    assert process.wait(5) == 0


def test_stats_count_requests_even_without_a_log() -> None:
    import httpx

    from tests.fake_openai import FakeOpenAI, FakeOpenAIControl

    server = FakeOpenAI("127.0.0.1", 0, max_log=0)
    server.start()
    try:
        control = FakeOpenAIControl(server.base_url)
        assert control.stats() == {"requests": 0, "first_seen_at": None}
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(3):
            httpx.post(f"{server.base_url}/chat/completions", json=body).raise_for_status()
        stats = control.stats()
        assert stats["requests"] == 3 and stats["first_seen_at"] > 0
        assert control.requests == []  # the log keeps nothing; the counter still counts
        control.reset()
        assert control.stats()["requests"] == 0
    finally:
        server.stop()


def test_dspy_chat_adapter_prompts_get_marked_fields() -> None:
    from tests.fake_openai._policy import default_answer

    prompt = (
        "[[ ## task ## ]]\nGive tips\n\nRespond with the corresponding output fields, starting "
        "with the field `[[ ## draft ## ]]`, then `[[ ## notes ## ]]`, and then ending with the "
        "marker for `[[ ## completed ## ]]`."
    )
    answer = default_answer([{"role": "user", "content": prompt}])
    lines = answer.splitlines()
    assert lines[0] == "[[ ## draft ## ]]" and lines[1].endswith(" draft")
    assert "[[ ## notes ## ]]" in lines and lines[-1] == "[[ ## completed ## ]]"
    assert "[[ ## task ## ]]" not in answer  # input fields are not answered
