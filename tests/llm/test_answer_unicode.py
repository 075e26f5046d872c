"""An answer whose text is not valid Unicode, over real HTTP: accepted with U+FFFD in place of
what cannot be encoded, so nothing after the client meets a UnicodeEncodeError."""

from __future__ import annotations

import pytest

from refine.errors import EndpointError
from tests.fake_openai import FakeOpenAI, Reply
from tests.llm import test_client
from tests.llm.test_client import MESSAGES, MakeClient

make_client = test_client.make_client  # the fixtures, shared with test_client.py
sleeper = test_client.sleeper


def _body(content_json: str) -> str:
    """A whole chat completion whose content is ``content_json`` (JSON text, escapes kept)."""
    return (
        '{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
        f'"message":{{"role":"assistant","content":{content_json}}},"finish_reason":"stop"}}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":3}}'
    )


@pytest.mark.parametrize(
    ("content_json", "answer"),
    [
        (r'"half \ud83d here"', "half \ufffd here"),  # a lone high surrogate
        (r'"\ude00 first"', "\ufffd first"),  # a lone low surrogate
        (r'"twice \ud83d\ud83d end"', "twice \ufffd\ufffd end"),
        (r'"pair \ud83d\ude00 kept, lone \udfff not"', "pair \U0001f600 kept, lone \ufffd not"),
        ('"caf\udce9 au lait"', "caf\ufffd au lait"),  # the byte 0xE9 alone: not UTF-8
    ],
)
async def test_text_that_is_not_unicode_becomes_replacement_characters(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    content_json: str,
    answer: str,
) -> None:
    fake_server.script([Reply(raw_body=_body(content_json))])
    completion = await make_client().complete(MESSAGES)
    assert completion.content == answer
    completion.content.encode("utf-8")  # what the cache and the output writer will do
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 3)
    assert completion.attempts == 1


async def test_an_error_message_with_a_lone_surrogate_is_quoted_encodable(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
) -> None:
    fake_server.script([Reply(raw_body=r'{"error": {"message": "bad \ud83d input", "code": 400}}')])
    with pytest.raises(EndpointError) as info:
        await make_client().complete(MESSAGES)
    assert "bad \ufffd input" in str(info.value)
    str(info.value).encode("utf-8")


@pytest.mark.parametrize(
    "body",
    [
        _body("NaN"),  # the standard library would read these constants; JSON has none
        r'{"choices": [], "x": Infinity, "y": "\ud83d"}',
        r'{"a": "\ud83d"',  # torn
    ],
)
async def test_the_fallback_reads_only_json(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    body: str,
) -> None:
    fake_server.script([Reply(raw_body=body)])
    with pytest.raises(EndpointError, match="not valid JSON"):
        await make_client().complete(MESSAGES)
