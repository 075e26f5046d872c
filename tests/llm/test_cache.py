"""The request cache: content-addressed keys, atomic JSON entries, corrupt entries as misses."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from flows.config.run import EndpointConfig
from flows.llm.cache import FORMAT, RequestCache, request_key

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


def _entry_path(root: Path, key: str) -> Path:
    [path] = [p for p in root.rglob("*.json") if p.stem == key]
    return path


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


def test_key_ignores_dict_order_and_settings_that_do_not_change_the_answer() -> None:
    base = _request(BASE)
    reordered = dict(reversed(list(base.items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in MESSAGES]
    # The endpoint's URL is not part of the request: the same model elsewhere answers alike.
    moved = _request(BASE.model_copy(update={"base_url": "http://other:8000/v1"}))
    keys = {request_key(base), request_key(reordered), request_key(moved)}
    assert len(keys) == 1
    [key] = keys
    assert len(key) == 64 and int(key, 16) >= 0


# -- entries ---------------------------------------------------------------------------------


def test_put_get_round_trip_and_miss(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "cache")
    key = request_key(_request())
    other = request_key(_request(step=2))
    assert cache.get(key) is None  # not even the folder exists yet

    cache.put(key, ANSWER)

    assert cache.get(key) == ANSWER
    assert cache.get(other) is None
    path = _entry_path(tmp_path / "cache", key)
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "format": FORMAT,
        "key": key,
        "answer": ANSWER,
    }
    unicode = {"content": "Le chat s'est assis. 猫 🐈", "finish_reason": "stop"}
    cache.put(key, unicode)  # a second put replaces the entry
    assert cache.get(key) == unicode
    assert [p.name for p in (tmp_path / "cache").rglob("*")] == [path.parent.name, path.name]


def test_api_key_is_not_in_the_entry(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request())
    cache.put(key, ANSWER)
    text = _entry_path(tmp_path, key).read_text(encoding="utf-8")
    assert "sk-" not in text and "authorization" not in text.lower()


def _valid_entry(key: str) -> str:
    return json.dumps({"format": FORMAT, "key": key, "answer": ANSWER})


@pytest.mark.parametrize(
    "damage",
    [
        lambda key: _valid_entry(key)[:-20].encode(),  # torn write
        lambda key: b"",
        lambda key: b"\xff\xfe\x00garbage\x80",
        lambda key: b"[1, 2, 3]",
        lambda key: _valid_entry("0" * 64).encode(),  # another request's answer
        lambda key: json.dumps({"format": FORMAT + 1, "key": key, "answer": ANSWER}).encode(),
        lambda key: json.dumps({"key": key, "answer": ANSWER}).encode(),
        lambda key: json.dumps({"format": FORMAT, "key": key, "answer": "text"}).encode(),
        lambda key: json.dumps({"format": FORMAT, "key": key}).encode(),
    ],
    ids=[
        "truncated",
        "empty",
        "not utf-8",
        "not an object",
        "wrong key",
        "newer format",
        "no format",
        "answer not an object",
        "no answer",
    ],  # fmt: skip
)
def test_damaged_entry_is_a_miss(tmp_path: Path, damage: Any) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request())
    cache.put(key, ANSWER)
    _entry_path(tmp_path, key).write_bytes(damage(key))
    assert cache.get(key) is None
    cache.put(key, ANSWER)  # and a new put repairs it
    assert cache.get(key) == ANSWER


def test_unwritable_answer_leaves_no_temp_file(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path)
    key = request_key(_request())
    with pytest.raises(TypeError):
        cache.put(key, {"content": object()})
    assert cache.get(key) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


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
    assert [p.name for p in root.rglob("*") if p.is_file()] == [f"{key}.json"]
