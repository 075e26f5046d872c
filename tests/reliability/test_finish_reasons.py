"""An answer counts as complete only when its ``finish_reason`` says it ended normally, through
``refine run`` over real HTTP: every other reason is a problem of that draft, fixed by the next
step and never the output, and such an answer is never kept in the request cache."""

from __future__ import annotations

import json
from pathlib import Path

from flows.llm.finish import COMPLETE_FINISH_REASONS
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    cache_entries_whole,
    records_by_id,
    refine,
    refine_env,
    served_only_real_answers,
    write_config,
    write_items,
)

HALF = "The pump was repai"
FIXED = "The pump at the site was repaired."

# (finish_reason sent with the step-1 answer, the problem its draft must show; None: complete)
CASES: list[tuple[str | None, str | None]] = [
    ("content_filter", "stopped by the provider's content filter (finish_reason=content_filter)"),
    ("length", "cut off at max_tokens (finish_reason=length)"),
    ("abort", "aborted the answer before it ended (finish_reason=abort)"),
    ("error", "finish_reason=error"),
    ("tool_calls", "called a tool instead of answering (finish_reason=tool_calls)"),
    ("function_call", "finish_reason=function_call"),
    ("load", "the answer ended with finish_reason='load', not a normal stop"),
    ("xyz", "the answer ended with finish_reason='xyz', not a normal stop"),
    # a provider's own reasons, as gateways pass them through (Gemini, Anthropic)
    ("MAX_TOKENS", "cut off at max_tokens (finish_reason='MAX_TOKENS')"),
    ("SAFETY", "stopped by the provider's safety filter (finish_reason='SAFETY')"),
    ("refusal", "the model refused to answer (finish_reason='refusal')"),
    ("stop", None),
    ("eos_token", None),
    ("stop_sequence", None),
    ("eos", None),
    ("STOP", None),
    ("end_turn", None),
    (None, None),  # many small servers send no finish_reason: complete, the record says null
]


def _null_reason_body(content: str) -> str:
    """A whole chat completion whose choice says ``"finish_reason": null``."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}}
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    body = {"id": "c1", "object": "chat.completion", "usage": usage}
    return json.dumps({**body, "choices": [{**choice, "finish_reason": None}]})


def _first_reply(reason: str | None) -> Reply:
    if reason is None:
        return Reply(raw_body=_null_reason_body(HALF))
    return Reply(content=HALF, finish_reason=reason)


def test_only_a_normal_stop_is_a_complete_answer(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(len(CASES))]
    for item_id, (reason, _) in zip(ids, CASES, strict=True):
        fake_server.script([_first_reply(reason), Reply(content=FIXED)], match=item_id)
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=2)
    args = ["run", str(data), "-o", str(out), "--config", str(config), "--model", "m",
            "--base-url", fake_server.base_url]  # fmt: skip

    result = refine(args, refine_env(prefect_server, tmp_path))

    assert result.returncode == 0, result.stderr[-3000:]
    records = records_by_id(out, ids)
    served_only_real_answers(records.values(), fake_server.chat_requests())
    for item_id, (reason, problem) in zip(ids, CASES, strict=True):
        record = records[item_id]
        first, second = record["drafts"]
        assert first["finish_reason"] == reason and first["text"] == HALF, item_id
        assert record["status"] == "ok" and record["output"] == FIXED, item_id
        if problem is None:
            assert reason is None or reason.lower() in COMPLETE_FINISH_REASONS
            assert first["problems"] == [] and second["kind"] == "draft", item_id
        else:
            assert len(first["problems"]) == 1 and problem in first["problems"][0], item_id
            assert second["kind"] == "fix" and record["selected_step"] == 2, item_id
    # a cut-off answer is not kept: each complete item keeps two entries, each cut one only
    # its fix; the run asked every request once
    complete = sum(1 for _, problem in CASES if problem is None)
    assert cache_entries_whole(tmp_path / "cache") == 2 * complete + (len(CASES) - complete)
    assert len(fake_server.chat_requests()) == 2 * len(CASES)
