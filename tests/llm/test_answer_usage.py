"""Token usage an endpoint leaves out, over real HTTP: estimated at 4 characters a token, marked
``estimated`` in the record, and said once per client in a warning."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

from flows.config.run import EndpointConfig
from flows.data.records import CachedAnswer, Draft, Usage
from flows.llm.cache import RequestCache
from flows.llm.calls import ModelCalls
from flows.llm.usage import split_usage
from tests.fake_openai import FakeOpenAI, Reply
from tests.llm import test_client
from tests.llm.test_client import MESSAGES, MakeClient

make_client = test_client.make_client  # the fixtures, shared with test_client.py
sleeper = test_client.sleeper

ANSWER = "A cat sat on the mat."  # 21 characters: 6 tokens estimated
PROMPT_CHARS = sum(len(m["content"]) for m in MESSAGES)  # 9 + 34 = 43: 11 tokens estimated


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(content=ANSWER, omit_fields=["usage"]),
        Reply(content=ANSWER, body_fields={"usage": None}),
        Reply(content=ANSWER, body_fields={"usage": "n/a"}),
        Reply(content=ANSWER, usage={"prompt_tokens": None, "completion_tokens": "7"}),
        Reply(content=ANSWER, usage={"prompt_tokens": -3, "completion_tokens": True}),
        Reply(content=ANSWER, usage={"prompt_tokens": 0, "completion_tokens": 0}),
    ],
)
async def test_missing_usage_is_estimated_and_said_once(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
) -> None:
    fake_server.script([reply, reply])
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="flows.llm.client"):
        first = await client.complete(MESSAGES)
        second = await client.complete(MESSAGES)
    expected = Usage(
        prompt_tokens=math.ceil(PROMPT_CHARS / 4),
        completion_tokens=math.ceil(len(ANSWER) / 4),
        estimated=True,
    )
    assert first.usage == second.usage == expected
    assert (expected.prompt_tokens, expected.completion_tokens) == (11, 6)
    [warning] = _warnings(caplog)
    assert fake_server.base_url in warning and "estimate" in warning and "budget" in warning


@pytest.mark.parametrize(
    ("usage", "prompt", "completion"),
    [
        ({"prompt_tokens": 40}, 40, 6),
        ({"prompt_tokens": 40, "completion_tokens": None}, 40, 6),
        ({"completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2}}, 11, 5),
        ({"prompt_tokens": 40.0, "completion_tokens": 0}, 40, 6),  # 0 for an answer: not counted
    ],
)
async def test_only_the_missing_count_is_estimated(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    usage: dict[str, Any],
    prompt: int,
    completion: int,
) -> None:
    fake_server.script([Reply(content=ANSWER, usage=usage)])
    got = (await make_client().complete(MESSAGES)).usage
    assert (got.prompt_tokens, got.completion_tokens, got.estimated) == (prompt, completion, True)


@pytest.mark.parametrize(
    ("content", "usage"),
    [
        (ANSWER, {"prompt_tokens": 40, "completion_tokens": 7}),
        ("", {"prompt_tokens": 40, "completion_tokens": 0}),  # an empty answer has 0 tokens
    ],
)
async def test_reported_usage_is_kept_and_nothing_is_said(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    content: str,
    usage: dict[str, int],
) -> None:
    fake_server.script([Reply(content=content, usage=usage)])
    with caplog.at_level(logging.WARNING, logger="flows.llm.client"):
        got = (await make_client().complete(MESSAGES)).usage
    assert got == Usage(prompt_tokens=40, completion_tokens=usage["completion_tokens"])
    assert _warnings(caplog) == []


async def test_an_estimated_usage_is_cached_and_counted_as_estimated(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    tmp_path: Path,
) -> None:
    fake_server.script([Reply(content=ANSWER, omit_fields=["usage"])])
    endpoint = EndpointConfig(base_url=fake_server.base_url, model="m")
    calls = [ModelCalls(make_client(), RequestCache(tmp_path), endpoint) for _ in range(2)]
    sent, fresh = await calls[0].complete(MESSAGES, step=1)
    served, cached = await calls[1].complete(MESSAGES, step=1)
    assert (fresh, cached) == (False, True) and len(fake_server.chat_requests()) == 1
    assert served.usage == sent.usage and served.usage.estimated
    assert calls[0].tokens == calls[1].tokens == 17


def test_a_sum_is_estimated_when_any_part_is() -> None:
    reported, guessed = Usage(prompt_tokens=3, completion_tokens=1), Usage(estimated=True)
    assert not (reported + reported).estimated
    assert (reported + guessed).estimated and (guessed + reported).estimated
    draft = Draft(step=1, text="t", usage=reported)
    assert not draft.total_usage.estimated


def test_records_and_cache_entries_without_the_field_read_as_reported() -> None:
    old = {"prompt_tokens": 3, "completion_tokens": 1, "cached_tokens": 0}
    entry = CachedAnswer.model_validate({"content": "x", "finish_reason": "stop", "usage": old})
    assert entry.usage.estimated is False
    assert Draft.model_validate({"step": 1, "text": "x", "usage": old}).usage.estimated is False
    new = CachedAnswer(content="x", finish_reason=None, usage=Usage(estimated=True))
    assert CachedAnswer.model_validate(new.model_dump()).usage.estimated is True


def test_estimated_is_written_only_when_true() -> None:
    # Records of endpoints that report usage keep the shape they always had.
    assert Usage(prompt_tokens=3).model_dump_json() == (
        '{"prompt_tokens":3,"completion_tokens":0,"cached_tokens":0}'
    )
    draft = Draft(step=1, text="t", usage=Usage(prompt_tokens=3, estimated=True))
    assert draft.model_dump(mode="json")["usage"]["estimated"] is True


def test_split_usage_reads_the_prompt_once_and_shares_the_completion_by_length() -> None:
    whole = Usage(prompt_tokens=100, completion_tokens=10, cached_tokens=40)
    shares = split_usage([whole] * 3, [10, 20, 0])
    assert [s.prompt_tokens for s in shares] == [100, 0, 0]
    assert [s.cached_tokens for s in shares] == [40, 0, 0]
    assert [s.completion_tokens for s in shares] == [4, 6, 0]  # 3 + the rounding's 1, 6, 0
    assert sum(s.completion_tokens for s in shares) == 10
    assert [s.completion_tokens for s in split_usage([whole] * 2, [0, 0])] == [5, 5]
    guessed = [Usage(prompt_tokens=50, completion_tokens=c, estimated=True) for c in (3, 7)]
    kept = split_usage(guessed, [12, 28])  # no count came: each keeps its own estimate
    assert [(s.prompt_tokens, s.completion_tokens, s.estimated) for s in kept] == [
        (50, 3, True),
        (0, 7, True),
    ]
