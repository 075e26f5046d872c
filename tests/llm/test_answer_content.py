"""What the answer's text is when ``message.content`` is not a plain string, over real HTTP:
lists of typed parts, refusals, and reasoning beside the content."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.llm.answer import UnusableAnswer, answer_text
from flows.llm.finish import finish_problem
from refine.errors import EndpointError, FatalEndpointError
from tests.fake_openai import FakeOpenAI, Reply
from tests.llm import test_client
from tests.llm.test_client import MESSAGES, MakeClient, SleepRecorder

make_client = test_client.make_client  # the fixtures, shared with test_client.py
sleeper = test_client.sleeper

THINKING = "The user wants a number; 6 times 7 is 42."


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        (  # Anthropic-style thinking, then the text
            {
                "content": [
                    {"type": "thinking", "thinking": THINKING},
                    {"type": "text", "text": "42"},
                ]
            },
            "42",
        ),
        (  # text in pieces around reasoning, Responses-API output_text among them
            {
                "content": [
                    {"type": "text", "text": "4"},
                    {"type": "reasoning", "text": THINKING},
                    {"type": "output_text", "text": "2"},
                ]
            },
            "42",
        ),
        ({"content": "42", "reasoning_content": THINKING}, "42"),  # vLLM, DeepSeek
        ({"content": "42", "reasoning": THINKING}, "42"),  # OpenRouter
        ({"content": None, "reasoning_content": THINKING}, ""),  # an empty answer, not the thought
        ({"content": []}, ""),  # no parts at all: an empty answer, like null
        (  # the Assistants API's parts: the text is an object holding its value
            {
                "content": [
                    {"type": "text", "text": {"value": "4", "annotations": []}},
                    {"type": "text", "text": "2"},
                ]
            },
            "42",
        ),
    ],
)
async def test_only_the_text_parts_are_the_answer(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    message: dict[str, Any],
    answer: str,
) -> None:
    fake_server.script([Reply(message_fields=message)])
    completion = await make_client().complete(MESSAGES)
    assert completion.content == answer
    assert "6 times 7" not in completion.content


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (
            {
                "content": [
                    {"type": "thinking", "thinking": THINKING},
                    {"type": "redacted_thinking"},
                ]
            },
            "the message content has no text part (parts: thinking, redacted_thinking)",
        ),
        (
            {"content": [{"type": "image_url", "image_url": {"url": "data:,"}}, "stray"]},
            "the message content has no text part (parts: image_url, str)",
        ),
        (
            {"content": None, "refusal": "I can't help with that."},
            'the model refused: "I can\'t help with that."',
        ),
        (
            {"content": "", "refusal": "I can't help with that."},
            'the model refused: "I can\'t help with that."',
        ),
        (
            {"content": [{"type": "refusal", "refusal": "I can't help with that."}]},
            'the model refused: "I can\'t help with that."',
        ),
        ({"content": {"text": "42"}}, "the message content is a dict, not text"),
        (
            {"content": [{"type": "text", "text": {"annotations": []}}]},
            "the message content has no text part (parts: text)",
        ),
        ({"content": 42}, "the message content is a int, not text"),
    ],
)
async def test_content_with_no_answer_in_it_fails_once_saying_what_was_there(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    sleeper: SleepRecorder,
    message: dict[str, Any],
    words: str,
) -> None:
    fake_server.script([Reply(message_fields=message)])
    with pytest.raises(EndpointError) as info:
        await make_client(max_attempts=4).complete(MESSAGES)
    assert not isinstance(info.value, FatalEndpointError)
    assert words in str(info.value) and "unusable answer from" in str(info.value)
    assert len(fake_server.chat_requests()) == 1 and sleeper.waits == []


async def test_a_refusal_beside_text_is_not_a_failure(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
) -> None:
    fake_server.script([Reply(content="42", message_fields={"refusal": "I'd rather not."})])
    assert (await make_client().complete(MESSAGES)).content == "42"


async def test_a_finish_reason_that_is_not_text_is_kept_as_text(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    """Only a missing reason reads as a normal end; a number is an unknown reason the loop
    treats as a problem of the draft (flows/llm/finish.py)."""
    body = {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"content": "42"}, "finish_reason": 3}],
    }
    fake_server.script([Reply(raw_body=json.dumps(body))])
    completion = await make_client().complete(MESSAGES)
    assert completion.finish_reason == "3"
    assert finish_problem(completion.finish_reason) == (
        "the answer ended with finish_reason='3', not a normal stop"
    )


@pytest.mark.parametrize(
    ("message", "words"),
    [("42", "the message is a str, not an object"), (["42"], "the message is a list, not an")],
)
def test_a_message_that_is_not_an_object_is_refused_saying_what_it_is(
    message: Any, words: str
) -> None:
    """No API sends the message as a bare string, so ``"message": "42"`` is not guessed to be
    the answer: it is refused, never read as an empty message."""
    with pytest.raises(UnusableAnswer, match=words):
        answer_text(message)
    assert answer_text(None) == ""  # no message at all: an empty one, as before


async def test_a_message_that_is_not_an_object_fails_the_call_over_http(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    body = {"object": "chat.completion", "choices": [{"index": 0, "message": "42"}]}
    fake_server.script([Reply(raw_body=json.dumps(body))])
    with pytest.raises(EndpointError, match="the message is a str, not an object"):
        await make_client().complete(MESSAGES)


async def test_a_body_too_deep_to_quote_without_choices_fails_saying_so(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    """orjson reads 1,000 levels but writes only 255: quoting the body must not crash."""
    fake_server.script([Reply(raw_body='{"x": ' + "[" * 1000 + "]" * 1000 + "}")])
    with pytest.raises(EndpointError, match=r"has no choices; it begins '\(a body nested too deep"):
        await make_client().complete(MESSAGES)
