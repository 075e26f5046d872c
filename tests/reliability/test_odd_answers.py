"""Answers that are odd but real, through ``refine run`` over real HTTP: an error inside a 200,
content as typed parts or a refusal, no token usage, text that is not valid Unicode."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.cache_helpers import stored
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    SECRET,
    Budget,
    no_secret_anywhere,
    records_by_id,
    refine,
    refine_env,
    requests_per_item,
    within_budget,
    write_config,
    write_items,
)

OVERLOADED = "Upstream provider overloaded, try again"
THOUGHT = "Let me think about pumps first."


def _args(data: Path, out: Path, config: Path, base_url: str, *more: str) -> list[str]:
    return ["run", str(data), "-o", str(out), "--config", str(config), "--base-url", base_url,
            "--model", "m", "--concurrency", "4", *more]  # fmt: skip


def _error_in_200(error: Any) -> Reply:
    return Reply(body_fields={"error": error}, omit_fields=["choices", "usage"])


def test_errors_inside_200_answers_and_content_parts(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    parts = [{"type": "thinking", "thinking": THOUGHT}, {"type": "text", "text": "Pump fixed."}]
    scripts: dict[int, list[Reply]] = {
        0: [_error_in_200({"message": OVERLOADED, "code": 502})] * 10,  # past the budget
        1: [_error_in_200({"message": OVERLOADED, "code": "502"})],  # once, then answers
        2: [_error_in_200({"message": f"key {SECRET} may not use model m", "code": 400})],
        3: [Reply(message_fields={"content": parts})] * 2,
        4: [Reply(message_fields={"content": None, "refusal": "I can't help with pumps."})],
    }
    for index, replies in scripts.items():
        fake_server.script(replies, match=f"item-{index:04d}")
    ids = [f"item-{i:04d}" for i in range(6)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=2, max_attempts=3)

    result = refine(
        _args(data, out, config, fake_server.base_url), refine_env(prefect_server, tmp_path)
    )

    assert result.returncode == 1, result.stderr[-2000:]
    records = records_by_id(out, ids)
    log = fake_server.chat_requests()
    within_budget(records, log, Budget(steps=2, max_attempts=3))
    sent = requests_per_item(log)
    failed = {i: r["error"] for i, r in records.items() if r["status"] == "failed"}
    assert set(failed) == {"item-0000", "item-0002", "item-0004"}
    assert "answered 200 with error 502 in the body after 3 attempt(s)" in failed["item-0000"]
    assert OVERLOADED in failed["item-0000"] and sent["item-0000"] == 3
    assert records["item-0001"]["drafts"][0]["attempts"] == 2 and sent["item-0001"] == 3
    assert "answered 200 with error 400 in the body after 1 attempt(s)" in failed["item-0002"]
    assert "key *** may not use model m" in failed["item-0002"] and sent["item-0002"] == 1
    assert [d["text"] for d in records["item-0003"]["drafts"]] == ["Pump fixed."] * 2
    assert THOUGHT not in out.read_text(encoding="utf-8")
    assert 'the model refused: "I can\'t help with pumps."' in failed["item-0004"]
    assert sent["item-0004"] == 1
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[result.stdout])


def test_a_refusal_inside_a_200_stops_the_run_once(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.script([_error_in_200({"message": "Invalid API key", "code": 401})] * 30, "item-")
    data = write_items(tmp_path / "data.jsonl", 30)
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml")

    result = refine(
        _args(data, out, config, fake_server.base_url), refine_env(prefect_server, tmp_path)
    )

    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "answered 200 with error 401 in the body" in errors[0]
    assert "Invalid API key" in result.stderr and "check the API key" in result.stderr
    assert len(fake_server.chat_requests()) <= 4  # only those already in flight
    assert out.read_text() == ""  # unfinished items are left for a rerun


def test_an_endpoint_without_usage_still_spends_the_token_budget(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(2)]
    for item_id in ids:
        fake_server.script([Reply(omit_fields=["usage"])] * 3, match=item_id)
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=3)
    args = _args(data, out, config, fake_server.base_url, "--max-tokens-per-item", "60")

    result = refine(args, refine_env(prefect_server, tmp_path))

    assert result.returncode == 0, result.stderr[-2000:]
    records = records_by_id(out, ids)
    for record in records.values():
        assert record["stop_reason"] == "token_budget", record
        [draft] = record["drafts"]  # one step's estimate is past 60 tokens
        assert draft["usage"]["estimated"] is True
        assert draft["usage"]["prompt_tokens"] + draft["usage"]["completion_tokens"] >= 60
    assert len(fake_server.chat_requests()) == 2
    tokens = re.search(r"prompt / completion tokens\W*(\d+) / (\d+)", result.stdout)
    assert tokens is not None, result.stdout[-2000:]
    assert int(tokens[1]) > 0 and int(tokens[2]) > 0
    assert re.search(r"prompt / completion tokens\W*\d+ / \d+ \(some estimated\)", result.stdout)
    logs = result.stdout + result.stderr
    assert logs.count("reported no token usage") == 1, logs[-3000:]


def _completion(content_json: str) -> str:
    """A chat completion body whose content is ``content_json``, JSON escapes kept as sent."""
    return (
        '{"id":"c","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
        f'"message":{{"role":"assistant","content":{content_json}}},"finish_reason":"stop"}}],'
        '"usage":{"prompt_tokens":90,"completion_tokens":6}}'
    )


def test_an_answer_with_a_lone_surrogate_is_written_and_cached(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = ["item-0000", "item-0001"]
    answer = _completion(r'"Pump at site 0 \ud83d repaired."')
    fake_server.script([Reply(raw_body=answer)] * 2, match="item-0000")
    data = write_items(tmp_path / "data.jsonl", len(ids))
    config = write_config(tmp_path / "c.toml", steps=2)
    env = refine_env(prefect_server, tmp_path)

    first, again = tmp_path / "out.jsonl", tmp_path / "again.jsonl"
    for out in (first, again):
        result = refine(_args(data, out, config, fake_server.base_url), env)
        assert result.returncode == 0, result.stderr[-2000:]

    assert len(fake_server.chat_requests()) == 4  # the second run asked nothing
    for out, cached in ((first, False), (again, True)):
        text = out.read_bytes().decode("utf-8")  # strict: valid UTF-8 or it raises
        record = records_by_id(out, ids)["item-0000"]
        assert record["status"] == "ok"
        assert [d["text"] for d in record["drafts"]] == ["Pump at site 0 \ufffd repaired."] * 2
        assert all(d["cached"] is cached for d in record["drafts"])
        assert "\\ud83d" not in text.lower()
    for value in stored(tmp_path / "cache").values():
        json.loads(value.decode("utf-8"))
