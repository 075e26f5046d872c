"""The request cache: content-addressed keys (the endpoint among them), JSON entries replaced
whole, corrupt entries and unusable answers as misses. The store itself (crashes, two processes,
formats, moving old caches in) is tested in test_cache_store.py."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path
from typing import Any

import orjson
import pytest

from flows.config.run import EndpointConfig, RetryConfig
from flows.llm.cache import RequestCache, request_key
from flows.llm.calls import ModelCalls, endpoint_identity
from flows.llm.client import ChatClient
from tests.cache_helpers import spoil, stored
from tests.fake_openai import FakeOpenAI, Reply

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Summarize: the cat sat on the mat."},
]
ANSWER = {
    "content": "A cat sat. " * 50,
    "finish_reason": "stop",
    "usage": {"prompt_tokens": 12, "completion_tokens": 150, "cached_tokens": 0},
}


def _request(
    endpoint: EndpointConfig | None = None,
    messages: list[dict[str, str]] | None = None,
    step: int = 1,
    sample: int = 0,
) -> dict[str, Any]:
    """A request as the engine keys it: everything that changes the answer."""
    endpoint = endpoint or EndpointConfig(base_url="http://127.0.0.1:1/v1", model="m", seed=7)
    return {
        "model": endpoint.model,
        "messages": MESSAGES if messages is None else messages,
        "sampling": endpoint.sampling(),
        "extra_body": endpoint.extra_body,
        "step": step,
        "sample": sample,
    }


# -- keys ------------------------------------------------------------------------------------

BASE = EndpointConfig(base_url="http://127.0.0.1:1/v1", model="m", seed=7)


@pytest.mark.parametrize(
    "changed",
    [
        _request(BASE.model_copy(update={"model": "m2"})),
        _request(BASE.model_copy(update={"temperature": 0.2})),
        _request(BASE.model_copy(update={"seed": 8})),
        _request(BASE.model_copy(update={"max_tokens": 64})),
        _request(BASE.model_copy(update={"top_p": 0.9})),
        _request(BASE.model_copy(update={"extra_body": {"top_k": 5}})),
        _request(messages=[MESSAGES[0], {**MESSAGES[1], "content": "Summarize: a dog."}]),
        _request(messages=[{**MESSAGES[0], "content": "Be long."}, MESSAGES[1]]),
        _request(messages=[{**MESSAGES[0], "role": "user"}, MESSAGES[1]]),
        _request(messages=MESSAGES[1:]),
        _request(messages=[*MESSAGES, {"role": "assistant", "content": "A cat."}]),
        _request(step=2),
        _request(sample=1),
    ],
    ids=[
        "model",
        "temperature",
        "seed",
        "max_tokens",
        "top_p",
        "extra_body",
        "user message",
        "system message",
        "role",
        "fewer messages",
        "more messages",
        "step",
        "sample",
    ],  # fmt: skip
)
def test_key_changes_with_anything_that_changes_the_answer(changed: dict[str, Any]) -> None:
    assert request_key(changed) != request_key(_request(BASE))


def test_key_ignores_dict_order() -> None:
    base = _request(BASE)
    reordered = dict(reversed(list(base.items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in MESSAGES]
    keys = {request_key(base), request_key(reordered)}
    assert len(keys) == 1
    [key] = keys
    assert len(key) == 64 and int(key, 16) >= 0


def _identity(base_url: str, **changes: Any) -> str:
    return endpoint_identity(EndpointConfig(base_url=base_url, model="m", **changes))


def test_the_endpoint_is_named_one_way_however_its_url_is_spelled() -> None:
    spellings = [
        "http://127.0.0.1:8080/v1",
        "http://127.0.0.1:8080/v1/",
        "HTTP://127.0.0.1:8080/v1",
        " http://127.0.0.1:8080/v1 ",
        "http://user:pw@127.0.0.1:8080/v1?api-key=sk-abc#frag",
    ]
    assert {_identity(url) for url in spellings} == {"http://127.0.0.1:8080/v1"}
    assert _identity("https://API.Example.com/v1/") == _identity("https://api.example.com:443/v1")
    assert _identity("https://api.example.com/v1") == "https://api.example.com:443/v1"
    assert _identity("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


@pytest.mark.parametrize(
    "other",
    [
        "http://127.0.0.1:8081/v1",
        "http://127.0.0.2:8080/v1",
        "https://127.0.0.1:8080/v1",
        "http://127.0.0.1:8080/v2",
        "http://127.0.0.1:8080/proxy/v1",
    ],
    ids=["port", "host", "scheme", "path", "prefix"],
)
def test_another_server_is_another_endpoint(other: str) -> None:
    assert _identity(other) != _identity("http://127.0.0.1:8080/v1")


def test_the_endpoint_name_holds_no_secret() -> None:
    name = _identity("https://alice:hunter2@api.example.com/v1?api-key=sk-abcdef123456&x=1")
    assert name == "https://api.example.com:443/v1"


def test_the_embedded_local_model_is_one_endpoint_on_any_port() -> None:
    """It listens on a new free port every run (flows.local.endpoint marks it ``embedded``)."""
    first = _identity("http://127.0.0.1:41234/v1", send_api_key=False, embedded=True)
    assert first == _identity("http://127.0.0.1:39999/v1", send_api_key=False, embedded=True)
    assert first != _identity("http://127.0.0.1:41234/v1")  # a server of the user's own
    # a local server of the user's that is sent no key is still its own endpoint, port and all
    own = _identity("http://127.0.0.1:41234/v1", send_api_key=False)
    assert own == "http://127.0.0.1:41234/v1"
    assert own != _identity("http://127.0.0.1:39999/v1", send_api_key=False)


# -- entries ---------------------------------------------------------------------------------


def test_put_get_round_trip_and_miss(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "cache")
    key = request_key(_request())
    other = request_key(_request(step=2))
    assert cache.get(key) is None  # not even the folder exists yet

    cache.put(key, ANSWER)

    assert cache.get(key) == ANSWER
    assert cache.get(other) is None
    assert {k: json.loads(v) for k, v in stored(tmp_path / "cache").items()} == {key: ANSWER}
    unicode = {"content": "Le chat s'est assis. 猫 🐈", "finish_reason": "stop"}
    cache.put(key, unicode)  # a second put replaces the entry
    assert cache.get(key) == unicode
    assert stored(tmp_path / "cache") == {key: orjson.dumps(unicode)}


def test_api_key_is_not_in_the_entry(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request())
    cache.put(key, ANSWER)
    text = stored(tmp_path)[key].decode("utf-8")
    assert "sk-" not in text and "authorization" not in text.lower()


@pytest.mark.parametrize(
    "damage",
    [
        json.dumps(ANSWER)[:-20].encode(),  # torn write
        b"",
        b"\xff\xfe\x00garbage\x80",
        b"[1, 2, 3]",
        b'"text"',
        b"null",
        json.dumps(ANSWER).encode().replace(b"A cat", b"A \\ud83d cat"),  # a lone surrogate
        7,  # not text at all
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "truncated",
        "empty",
        "not utf-8",
        "not an object",
        "a string",
        "null",
        "lone surrogate",
        "an integer",
        "nested too deep",
    ],  # fmt: skip
)
def test_damaged_entry_is_a_miss(tmp_path: Path, damage: object) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request())
    cache.put(key, ANSWER)
    spoil(tmp_path, key, damage)
    assert cache.get(key) is None
    cache.put(key, ANSWER)  # and a new put repairs it
    assert cache.get(key) == ANSWER


def test_unwritable_answer_leaves_no_temp_file(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request())
    with pytest.raises(TypeError):
        cache.put(key, {"content": object()})
    assert cache.get(key) is None
    assert stored(tmp_path) == {}


# -- concurrent writers ----------------------------------------------------------------------


def _write_many(root: str, key: str, writer: int, times: int) -> None:
    cache = RequestCache(Path(root))
    for n in range(times):
        cache.put(key, {**ANSWER, "writer": writer, "n": n})


def test_concurrent_writers_never_show_a_partial_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    key = request_key(_request())
    reader = RequestCache(root)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(root), key, w, 200)) for w in range(4)]
    for process in writers:
        process.start()
    seen: list[dict[str, Any] | None] = []
    while any(p.is_alive() for p in writers):
        seen.append(reader.get(key))
    for process in writers:
        process.join(30)
        assert process.exitcode == 0
    seen.append(reader.get(key))

    hits = [answer for answer in seen if answer is not None]
    # The reader saw several versions, so it really read while the writers replaced the file.
    assert len({(answer["writer"], answer["n"]) for answer in hits}) > 1
    for answer in hits:
        assert answer.keys() == {*ANSWER, "writer", "n"}
        assert {k: answer[k] for k in ANSWER} == ANSWER
        assert answer["writer"] in range(4) and answer["n"] in range(200)
    final = seen[-1]
    assert final is not None and final["n"] == 199
    assert list(stored(root)) == [key]


# -- text that is not valid Unicode ------------------------------------------------------------

LONE = "A cat \ud83d sat."  # half of an emoji, cut from its pair


def test_a_lone_surrogate_gets_a_key_and_valid_text_keeps_its_old_key() -> None:
    odd = request_key(_request(messages=[{"role": "user", "content": LONE}]))
    plain = request_key(_request(messages=[{"role": "user", "content": "A cat sat."}]))
    assert len(odd) == 64 and odd != plain
    # valid text is keyed as earlier releases keyed it: plain UTF-8 of the canonical JSON
    request = _request(messages=[{"role": "user", "content": "Le chat 猫 🐈"}])
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert request_key(request) == hashlib.sha256(canonical.encode()).hexdigest()


def test_an_answer_with_a_lone_surrogate_is_stored_without_crashing_and_reads_as_a_miss(
    tmp_path: Path,
) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request(messages=[{"role": "user", "content": LONE}]))
    cache.put(key, {**ANSWER, "content": LONE})
    assert cache.write_errors == 0
    assert cache.get(key) is None  # never a wrong answer; the request is asked again
    assert list(stored(tmp_path)) == [key]
    cache.put(key, ANSWER)
    assert cache.get(key) == ANSWER


# -- which answers the cache keeps: through ModelCalls, over HTTP --------------------------------


async def _ask(server: FakeOpenAI, cache: RequestCache) -> tuple[str, bool]:
    """One step-1 request through a real client and the cache: the answer and whether cached."""
    endpoint = EndpointConfig(base_url=server.base_url, model="m", seed=7)
    client = ChatClient(endpoint, RetryConfig(max_attempts=1), None, max_in_flight=1)
    try:
        completion, cached = await ModelCalls(client, cache, endpoint).complete(MESSAGES, 1)
    finally:
        await client.aclose()
    return completion.content, cached


@pytest.mark.parametrize(
    "reply",
    [
        Reply(content=""),
        Reply(content="  \n"),
        Reply(content="Half a sen", finish_reason="length"),
        Reply(content="Filtered half", finish_reason="content_filter"),
        Reply(content="Odd end", finish_reason="xyz"),
    ],
    ids=["empty", "blank", "length", "content_filter", "unknown"],
)
async def test_an_unusable_answer_is_not_kept_and_asked_again(
    fake_server: FakeOpenAI, tmp_path: Path, reply: Reply
) -> None:
    cache = RequestCache(tmp_path / "cache")
    fake_server.script([reply, Reply(content="A cat sat on the mat.")])
    assert await _ask(fake_server, cache) == (reply.content, False)
    assert stored(tmp_path / "cache") == {}
    assert await _ask(fake_server, cache) == ("A cat sat on the mat.", False)
    assert await _ask(fake_server, cache) == ("A cat sat on the mat.", True)
    assert len(fake_server.chat_requests()) == 2


@pytest.mark.parametrize(
    "earlier",
    [{"content": ""}, {"finish_reason": "length"}, {"finish_reason": "content_filter"}],
    ids=["empty", "length", "content_filter"],
)
async def test_an_unusable_answer_an_earlier_release_cached_is_a_miss(
    fake_server: FakeOpenAI, tmp_path: Path, earlier: dict[str, str]
) -> None:
    cache = RequestCache(tmp_path / "cache")
    fake_server.script([Reply(content="First."), Reply(content="Asked again.")])
    assert await _ask(fake_server, cache) == ("First.", False)
    [(key, value)] = stored(tmp_path / "cache").items()
    answer = json.loads(value)
    answer.update(earlier)  # as the release before this one wrote such answers
    spoil(tmp_path / "cache", key, json.dumps(answer).encode())

    assert await _ask(fake_server, cache) == ("Asked again.", False)
    assert len(fake_server.chat_requests()) == 2
