"""A 200 answer whose body is an error, over real HTTP: retried, failed once or fatal, exactly as
the HTTP status it names, and always quoting the server's message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from refine.errors import EndpointError, FatalEndpointError
from tests.fake_openai import FakeOpenAI, Reply
from tests.llm import test_client
from tests.llm.test_client import (
    MESSAGES,
    MakeClient,
    SleepRecorder,
    error_after_three_attempts,
)

make_client = test_client.make_client  # the fixtures, shared with test_client.py
sleeper = test_client.sleeper

OVERLOADED = "Upstream provider overloaded, try again"


def _error_body(error: Any, **more: Any) -> Reply:
    """A 200 whose body is ``{"error": error, **more}`` and nothing else."""
    return Reply(body_fields={"error": error, **more}, omit_fields=["choices", "usage"])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"message": OVERLOADED, "code": 502}, 502),  # OpenRouter
        ({"message": OVERLOADED, "code": "502"}, 502),
        ({"message": OVERLOADED, "status": 503}, 503),
        ({"message": OVERLOADED, "type": "server_error", "code": None}, 500),  # OpenAI
        ({"message": OVERLOADED, "type": "rate_limit_exceeded"}, 429),
        ({"message": OVERLOADED, "code": "rate_limit_exceeded"}, 429),
        ({"message": OVERLOADED, "type": "overloaded_error"}, 503),  # Anthropic
        ({"message": OVERLOADED, "code": 429, "status": "RESOURCE_EXHAUSTED"}, 429),  # Google
        ({"message": OVERLOADED, "status": "UNAVAILABLE"}, 503),
        ({"message": OVERLOADED, "code": 408}, 408),
        ({"message": OVERLOADED, "code": 409}, 409),
        ({"message": OVERLOADED, "code": 429.0}, 429),
        ({"message": OVERLOADED, "code": "503 Service Unavailable"}, 503),
        ({"message": OVERLOADED, "status": " 502 Bad Gateway"}, 502),
    ],
)
async def test_a_retryable_error_in_a_200_uses_exactly_the_attempt_budget(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    error: dict[str, Any],
    status: int,
) -> None:
    reply = _error_body(error)
    failure = await error_after_three_attempts(fake_server, make_client, sleeper, reply)
    assert failure.status == status
    assert f"answered 200 with error {status} in the body after 3 attempt(s)" in str(failure)
    assert OVERLOADED in str(failure)
    assert [e.status for e in fake_server.chat_requests()] == [200] * 3


async def test_an_error_in_a_200_then_an_answer(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
) -> None:
    fake_server.script([_error_body({"message": OVERLOADED, "code": 502}), Reply(content="ok")])
    completion = await make_client(max_attempts=3).complete(MESSAGES)
    assert (completion.content, completion.attempts) == ("ok", 2)
    assert len(fake_server.chat_requests()) == 2 and len(sleeper.waits) == 1


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (_error_body({"message": "Prompt too long for this model", "code": 400}), 400),
        (_error_body({"message": "Prompt too long for this model", "code": 1302}), None),
        (_error_body({"message": "Prompt too long for this model"}), None),  # no code
        (_error_body("Prompt too long for this model"), None),  # a plain string
        (_error_body({"message": "Prompt too long for this model", "code": "insufficient"}), None),
        (  # vLLM's error shape, sent with a 200
            Reply(
                raw_body='{"object": "error", "message": "Prompt too long for this model", '
                '"type": "BadRequestError", "param": null, "code": 400}'
            ),
            400,
        ),
    ],
)
async def test_an_error_in_a_200_that_names_no_retryable_status_is_tried_once(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    reply: Reply,
    status: int | None,
) -> None:
    fake_server.script([reply, Reply(content="ok")])
    client = make_client(max_attempts=4)
    with pytest.raises(EndpointError) as info:
        await client.complete(MESSAGES)
    assert not isinstance(info.value, FatalEndpointError)
    assert info.value.status == status
    assert "answered 200 with" in str(info.value) and "after 1 attempt(s)" in str(info.value)
    assert "Prompt too long for this model" in str(info.value)
    assert len(fake_server.chat_requests()) == 1 and sleeper.waits == []
    assert (await client.complete(MESSAGES)).content == "ok"  # not a reason to stop the run


@pytest.mark.parametrize(
    ("error", "status", "hint"),
    [
        ({"message": "Invalid key", "code": 401}, 401, "API key"),
        ({"message": "Invalid key", "type": "authentication_error"}, 401, "API key"),
        ({"message": "Invalid key", "code": "403"}, 403, "not allowed"),
        ({"message": "Invalid key", "code": "model_not_found"}, 404, "check --base-url"),
    ],
)
async def test_a_fatal_error_in_a_200_stops_every_later_call(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    error: dict[str, Any],
    status: int,
    hint: str,
) -> None:
    fake_server.script([_error_body(error), Reply(content="ok")])
    client = make_client(max_attempts=4)
    with pytest.raises(FatalEndpointError) as first:
        await client.complete(MESSAGES)
    assert first.value.status == status
    assert f"answered 200 with error {status} in the body" in str(first.value)
    assert "Invalid key" in str(first.value) and hint in str(first.value)
    with pytest.raises(FatalEndpointError):
        await client.complete(MESSAGES)
    assert len(fake_server.chat_requests()) == 1 and sleeper.waits == []


@pytest.mark.parametrize(
    "error", [{"message": OVERLOADED, "code": 502}, None, "", "a warning, not an error"]
)
async def test_choices_win_over_an_error_beside_them(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    error: Any,
) -> None:
    # Gateways send "error": null on every answer; an answer with choices is an answer.
    fake_server.script([Reply(content="A cat sat.", body_fields={"error": error})])
    completion = await make_client().complete(MESSAGES)
    assert (completion.content, completion.attempts) == ("A cat sat.", 1)


OPENROUTER_ERROR_CHOICE = (  # an upstream failure after the answer began, as OpenRouter sends it
    '{"id": "gen-1", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": '
    '"error", "message": {"role": "assistant", "content": ""}, "error": {"code": 502, '
    f'"message": "{OVERLOADED}"}}}}]}}'
)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw_body=OPENROUTER_ERROR_CHOICE),
        Reply(content="", body_fields={"error": {"message": OVERLOADED, "code": 502}}),
    ],
)
async def test_an_error_with_a_choice_that_holds_no_text_is_the_error(
    fake_server: FakeOpenAI, make_client: MakeClient, sleeper: SleepRecorder, reply: Reply
) -> None:
    failure = await error_after_three_attempts(fake_server, make_client, sleeper, reply)
    assert failure.status == 502 and OVERLOADED in str(failure)


async def test_an_error_in_a_200_never_quotes_the_key(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
) -> None:
    echoed = "Key sk-test-secret is over quota; also token sk-proj-abcdef123456"
    fake_server.script([_error_body({"message": echoed, "code": 400})])
    with pytest.raises(EndpointError) as info:
        await make_client().complete(MESSAGES)
    assert "sk-test-secret" not in str(info.value) and "abcdef123456" not in str(info.value)
    assert "Key *** is over quota" in str(info.value)


async def test_a_body_without_choices_or_error_is_quoted(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
) -> None:
    fake_server.script([Reply(raw_body='{"detail": "no such deployment"}')])
    with pytest.raises(EndpointError, match="has no choices") as info:
        await make_client(max_attempts=3).complete(MESSAGES)
    assert "no such deployment" in str(info.value)
    assert len(fake_server.chat_requests()) == 1


@pytest.mark.parametrize(
    "body",
    ["[" * 5000 + "]" * 5000, '["\udcff", ' + "[" * 5000 + "]" * 5000 + "]"],  # \udcff: byte ff
    ids=["deep", "deep and not utf-8"],
)
async def test_a_body_nested_too_deep_is_not_json_and_tried_once(
    fake_server: FakeOpenAI, make_client: MakeClient, body: str
) -> None:
    fake_server.script([Reply(raw_body=body)])
    with pytest.raises(EndpointError, match=r"is not valid JSON \(nested too deep\)"):
        await make_client(max_attempts=3).complete(MESSAGES)
    assert len(fake_server.chat_requests()) == 1


async def test_an_error_nested_too_deep_to_quote_is_still_the_error(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    error = '{"error": {"code": 400, "param": ' + "[" * 500 + "]" * 500 + "}}"
    fake_server.script([Reply(raw_body=error)])
    with pytest.raises(EndpointError, match="answered 200 with error 400 in the body") as info:
        await make_client(max_attempts=3).complete(MESSAGES)
    assert "nested too deep to quote" in str(info.value)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"status": 503, "message": OVERLOADED}, 503),
        ({"status_code": 503, "detail": OVERLOADED}, 503),
        ({"status": "429 Too Many Requests", "message": OVERLOADED}, 429),
        ({"code": 502.0, "message": OVERLOADED, "choices": []}, 502),
    ],
)
async def test_a_status_at_the_top_of_a_body_without_choices_is_that_error(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    body: dict[str, Any],
    status: int,
) -> None:
    reply = Reply(raw_body=json.dumps(body))
    failure = await error_after_three_attempts(fake_server, make_client, sleeper, reply)
    assert failure.status == status
    assert f"answered 200 with error {status} in the body after 3 attempt(s)" in str(failure)
    assert OVERLOADED in str(failure)


@pytest.mark.parametrize("code", [429.5, "5030", "four hundred", "200 OK", True], ids=repr)
async def test_a_code_that_is_no_error_status_names_none(
    fake_server: FakeOpenAI, make_client: MakeClient, code: Any
) -> None:
    fake_server.script([_error_body({"message": OVERLOADED, "code": code})])
    with pytest.raises(EndpointError, match="answered 200 with an error in the body after 1"):
        await make_client(max_attempts=3).complete(MESSAGES)
