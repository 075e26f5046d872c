"""The fake server's Files and Batch APIs, over real HTTP with the real openai SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx
import openai
import orjson
import pytest
from openai.types import Batch

from tests.cli_helpers import fake_server_process
from tests.fake_openai import BatchBehaviour, FakeOpenAI, FakeOpenAIControl, Reply

CHAT: Final = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")


@pytest.fixture
def sdk(fake_server: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def _lines(bodies: dict[str, dict[str, Any]]) -> bytes:
    rows = [{"custom_id": k, "method": "POST", "url": CHAT, "body": b} for k, b in bodies.items()]
    return _jsonl(rows)


def _submit(sdk: openai.OpenAI, data: bytes, **metadata: str) -> Batch:
    upload = sdk.files.create(file=("requests.jsonl", data), purpose="batch")
    return sdk.batches.create(
        input_file_id=upload.id,
        endpoint=CHAT,
        completion_window="24h",
        metadata=metadata or None,
    )


def _poll(
    sdk: openai.OpenAI,
    batch_id: str,
    until: Callable[[Batch], bool] = lambda b: b.status in TERMINAL,
    seen: list[str] | None = None,
) -> Batch:
    """Retrieve the batch every 5 ms until ``until`` holds; ``seen`` collects its statuses."""
    deadline = time.monotonic() + 5
    while True:
        batch = sdk.batches.retrieve(batch_id)
        if seen is not None and (not seen or seen[-1] != batch.status):
            seen.append(batch.status)
        if until(batch):
            return batch
        assert time.monotonic() < deadline, f"batch stuck: {batch}"
        time.sleep(0.005)


def _results(sdk: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    """The lines of a batch's output or error file by custom_id."""
    if file_id is None:
        return {}
    rows = [orjson.loads(line) for line in sdk.files.content(file_id).content.splitlines()]
    return {row["custom_id"]: row for row in rows}


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("id", "created")}


def test_lines_are_answered_as_chat_completions_answers_them(
    fake_server: FakeOpenAI, sdk: openai.OpenAI
) -> None:
    bodies = {
        "a": _body("alpha one"),
        "b": _body("beta", seed=3),
        "c": _body("gamma", n=2, logprobs=True),
    }
    scripted = Reply(content="scripted alpha", finish_reason="length")
    fake_server.script([scripted], match="alpha")
    fake_server.set_batch_behaviour(
        BatchBehaviour(validating_s=0.1, line_delay_s=0.05, finalizing_s=0.1)
    )
    created = _submit(sdk, _lines(bodies), run="r1")
    assert created.status == "validating" and created.metadata == {"run": "r1"}
    assert created.request_counts is not None and created.request_counts.total == 0

    seen: list[str] = []
    batch = _poll(sdk, created.id, seen=seen)

    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 3, "failed": 0}
    assert batch.error_file_id is None and batch.errors is None and batch.model == "gpt-test"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.expires_at == batch.created_at + 24 * 3600
    output = _results(sdk, batch.output_file_id)
    assert sorted(output) == ["a", "b", "c"]
    assert {row["response"]["status_code"] for row in output.values()} == {200}
    assert all(
        row["error"] is None and row["id"].startswith("batch_req_") for row in output.values()
    )

    fake_server.script([scripted], match="alpha")
    for custom_id, body in bodies.items():
        direct = httpx.post(f"{fake_server.base_url}/chat/completions", json=body).json()
        assert _comparable(output[custom_id]["response"]["body"]) == _comparable(direct)
    assert output["a"]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    assert len(output["c"]["response"]["body"]["choices"]) == 2

    lines = [e for e in fake_server.chat_requests() if e.batch_id == batch.id]
    assert [(e.method, e.path, e.status, e.scripted) for e in lines] == [
        ("POST", CHAT, 200, True),
        ("POST", CHAT, 200, False),
        ("POST", CHAT, 200, False),
    ]
    assert [e.body for e in lines] == list(bodies.values())
    assert lines[0].content == "scripted alpha"
    assert all(e.answered is not None and e.answered - e.received >= 0.05 for e in lines)
    assert lines[0].headers["authorization"] == "Bearer sk-test"
    usages = [output[k]["response"]["body"]["usage"] for k in bodies]
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(u["prompt_tokens"] for u in usages)
    assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in usages)
    posts = [e for e in fake_server.requests if (e.method, e.path) == ("POST", "/v1/batches")]
    assert len(posts) == 1 and posts[0].body["input_file_id"] == batch.input_file_id

    output_file = sdk.files.retrieve(batch.output_file_id or "")
    assert output_file.purpose == "batch_output"
    assert output_file.filename == f"{batch.id}_output.jsonl"
    assert {f["id"] for f in fake_server.files()} == {batch.input_file_id, output_file.id}


def test_failed_lines_go_to_the_error_file(fake_server: FakeOpenAI, sdk: openai.OpenAI) -> None:
    fake_server.script([Reply(status=500, content="overloaded")], match="five hundred")
    fake_server.script([Reply(hang=True)], match="hangs")
    fake_server.script([Reply(drop_connection=True)], match="drops")
    rows = {"ok": _body("fine"), "e500": _body("five hundred"), "hang": _body("hangs")}
    rows |= {"drop": _body("drops"), "no-messages": {"model": "gpt-test"}}

    batch = _poll(sdk, _submit(sdk, _lines(rows)).id)

    assert batch.status == "completed" and batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 1, "failed": 4}
    assert list(_results(sdk, batch.output_file_id)) == ["ok"]
    errors = _results(sdk, batch.error_file_id)
    assert errors["e500"]["response"]["status_code"] == 500
    assert errors["e500"]["response"]["body"]["error"]["message"] == "overloaded"
    assert errors["no-messages"]["response"]["status_code"] == 400
    assert errors["hang"]["response"] is None
    assert errors["hang"]["error"]["code"] == "request_timeout"
    assert errors["drop"]["response"] is None and errors["drop"]["error"]["code"]
    statuses = [e.status for e in fake_server.chat_requests() if e.batch_id == batch.id]
    assert statuses == [200, 500, None, None, 400]


def test_a_held_batch_shows_progress_until_released(
    fake_server: FakeOpenAI, sdk: openai.OpenAI
) -> None:
    fake_server.script_batches([BatchBehaviour(hold_after_lines=1)])
    batch = _submit(sdk, _lines({str(i): _body(f"q{i}") for i in range(3)}))

    held = _poll(
        sdk, batch.id, lambda b: b.request_counts is not None and b.request_counts.completed == 1
    )
    time.sleep(0.1)
    still = sdk.batches.retrieve(batch.id)
    assert (held.status, still.status) == ("in_progress", "in_progress")
    assert still.request_counts is not None and still.request_counts.completed == 1
    assert fake_server.release_batches() == 1

    done = _poll(sdk, batch.id)
    assert done.status == "completed" and sorted(_results(sdk, done.output_file_id)) == [
        "0",
        "1",
        "2",
    ]
    # The behaviour was one-shot: the next batch runs straight through.
    assert _poll(sdk, _submit(sdk, _lines({"x": _body("x")})).id).status == "completed"


def test_an_expired_batch_keeps_the_answered_lines(
    fake_server: FakeOpenAI, sdk: openai.OpenAI
) -> None:
    fake_server.script_batches([{"expire_after_lines": 2}])
    batch = _poll(sdk, _submit(sdk, _lines({str(i): _body(f"q{i}") for i in range(4)})).id)

    assert batch.status == "expired" and batch.expired_at and batch.completed_at is None
    assert batch.request_counts is not None
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}
    assert sorted(_results(sdk, batch.output_file_id)) == ["0", "1"]
    errors = _results(sdk, batch.error_file_id)
    assert sorted(errors) == ["2", "3"]
    assert {(e["response"], e["error"]["code"]) for e in errors.values()} == {
        (None, "batch_expired")
    }
    assert len([e for e in fake_server.chat_requests() if e.batch_id == batch.id]) == 2


def test_cancel_keeps_partial_output_and_finished_batches_refuse_it(
    fake_server: FakeOpenAI, sdk: openai.OpenAI
) -> None:
    fake_server.set_batch_behaviour({"hold_after_lines": 2, "cancelling_s": 0.1})
    batch = _submit(sdk, _lines({str(i): _body(f"q{i}") for i in range(4)}))
    _poll(sdk, batch.id, lambda b: b.request_counts is not None and b.request_counts.completed == 2)

    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert sdk.batches.cancel(batch.id).status == "cancelling"  # asking twice is fine
    seen: list[str] = []
    cancelled = _poll(sdk, batch.id, seen=seen)

    assert seen == ["cancelling", "cancelled"] and cancelled.cancelled_at
    assert sorted(_results(sdk, cancelled.output_file_id)) == ["0", "1"]
    errors = _results(sdk, cancelled.error_file_id)
    assert {k: e["error"]["code"] for k, e in errors.items()} == {
        "2": "batch_cancelled",
        "3": "batch_cancelled",
    }
    with pytest.raises(openai.ConflictError, match="status 'cancelled'"):
        sdk.batches.cancel(batch.id)

    fake_server.set_batch_behaviour(BatchBehaviour(validating_s=5))
    validating = _submit(sdk, _lines({"v": _body("v")}))
    assert sdk.batches.cancel(validating.id).status == "cancelling"
    gone = _poll(sdk, validating.id)
    assert gone.status == "cancelled" and gone.output_file_id is None
    assert gone.in_progress_at is None
    assert not [e for e in fake_server.chat_requests() if e.batch_id == validating.id]


def test_invalid_input_fails_the_batch_with_line_numbers(
    fake_server: FakeOpenAI, sdk: openai.OpenAI
) -> None:
    good = {"custom_id": "a", "method": "POST", "url": CHAT, "body": _body("a")}
    data = _jsonl(
        [
            good,
            {**good, "body": _body("again")},
            {**good, "custom_id": "b", "url": "/v1/completions"},
            {**good, "custom_id": "c", "method": "GET"},
        ]
    )
    data += b"{not json\n"

    batch = _poll(sdk, _submit(sdk, data).id)

    assert batch.status == "failed" and batch.failed_at and batch.in_progress_at is None
    assert batch.errors is not None and batch.errors.object == "list"
    found = [(e.line, e.code, e.param) for e in batch.errors.data or []]
    assert found == [
        (2, "duplicate_custom_id", "custom_id"),
        (3, "invalid_url", "url"),
        (4, "invalid_method", "method"),
        (5, "invalid_json_line", None),
    ]
    assert batch.output_file_id is None and batch.error_file_id is None
    assert fake_server.chat_requests() == []

    fake_server.script_batches([{"fail_validation": "Enqueued token limit reached"}])
    refused = _poll(sdk, _submit(sdk, _jsonl([good])).id)
    assert refused.status == "failed" and refused.errors is not None
    assert (refused.errors.data or [])[0].message == "Enqueued token limit reached"


def test_openai_limits_and_bad_requests(fake_server: FakeOpenAI, sdk: openai.OpenAI) -> None:
    too_many = _poll(sdk, _submit(sdk, b"{}\n" * 50_001).id)
    assert too_many.status == "failed" and too_many.errors is not None
    assert [e.code for e in too_many.errors.data or []] == ["too_many_requests"]
    assert "50,000" in ((too_many.errors.data or [])[0].message or "")

    fake_server.state.batch_store.max_bytes = 100  # the 200 MB limit, checked cheaply
    line = {"custom_id": "a", "method": "POST", "url": CHAT, "body": _body("x" * 100)}
    too_big = _poll(sdk, _submit(sdk, _jsonl([line])).id)
    assert too_big.errors is not None
    assert [e.code for e in too_big.errors.data or []] == ["file_too_large"]

    with pytest.raises(openai.NotFoundError, match="No such File object"):
        sdk.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    other = sdk.files.create(file=("notes.jsonl", b"{}\n"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        sdk.batches.create(input_file_id=other.id, endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_nope")
    assert sdk.files.delete(other.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(other.id)


def test_create_errors_are_scripted_and_the_sdk_retries_them(fake_server: FakeOpenAI) -> None:
    fast = {"retry-after-ms": "10"}
    fake_server.script_batches(
        [
            BatchBehaviour(create_status=429, create_headers=fast),
            BatchBehaviour(create_status=500, create_headers=fast),
        ]
    )
    with openai.OpenAI(base_url=fake_server.base_url, api_key="k", max_retries=2) as retrying:
        batch = _submit(retrying, _lines({"a": _body("a")}))
        assert _poll(retrying, batch.id).status == "completed"
    posts = [e.status for e in fake_server.requests if e.path == "/v1/batches"]
    assert posts == [429, 500, 200]

    fake_server.script_batches([{"create_status": 429}])
    with (
        openai.OpenAI(base_url=fake_server.base_url, api_key="k", max_retries=0) as once,
        pytest.raises(openai.RateLimitError),
    ):
        _submit(once, _lines({"a": _body("a")}))


def test_list_pages_newest_first(fake_server: FakeOpenAI, sdk: openai.OpenAI) -> None:
    upload = sdk.files.create(file=("r.jsonl", _lines({"a": _body("a")})), purpose="batch")
    ids = [
        sdk.batches.create(input_file_id=upload.id, endpoint=CHAT, completion_window="24h").id
        for _ in range(5)
    ]

    first = sdk.batches.list(limit=2)
    assert [b.id for b in first.data] == [ids[4], ids[3]] and first.has_more
    assert [b.id for b in sdk.batches.list(limit=2)] == ids[::-1]  # follows `after` to the end
    last = sdk.batches.list(limit=2, after=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and not last.has_more
    assert [b["id"] for b in fake_server.batches()] == ids
    with pytest.raises(openai.BadRequestError):
        sdk.batches.list(limit=500)


def test_uploads_round_trip_byte_for_byte(sdk: openai.OpenAI) -> None:
    data = bytes(range(256)) * 4 + b"\r\n--boundary-like\r\n\r\n"
    upload = sdk.files.create(file=("odd.bin", data), purpose="user_data")
    assert (upload.bytes, upload.filename, upload.status) == (len(data), "odd.bin", "processed")
    assert sdk.files.content(upload.id).content == data
    assert sdk.files.retrieve(upload.id).id == upload.id
    batch_file = sdk.files.create(file=("r.jsonl", b"{}\n"), purpose="batch")
    assert [f.id for f in sdk.files.list()] == [batch_file.id, upload.id]
    assert [f.id for f in sdk.files.list(purpose="batch")] == [batch_file.id]
    assert [f.id for f in sdk.files.list(order="asc", limit=1)] == [upload.id, batch_file.id]


def test_another_process_controls_batches_and_reset_forgets_them() -> None:
    with (
        fake_server_process() as base_url,
        openai.OpenAI(base_url=base_url, api_key="sk-remote", max_retries=0) as sdk,
    ):
        control = FakeOpenAIControl(base_url)
        control.script_batches([BatchBehaviour(hold_after_lines=0)])
        control.script([Reply(content="remote answer")])
        batch = _submit(sdk, _lines({"a": _body("a")}))
        _poll(sdk, batch.id, lambda b: b.status == "in_progress")
        assert control.chat_requests() == []

        assert control.release_batches() == 1
        done = _poll(sdk, batch.id)
        assert done.status == "completed"
        body = _results(sdk, done.output_file_id)["a"]["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "remote answer"
        (line,) = control.chat_requests()
        assert line.batch_id == batch.id and line.content == "remote answer"
        assert [b["status"] for b in control.batches()] == ["completed"]
        assert len(control.files()) == 2

        control.set_batch_behaviour({"hold_after_lines": 0})
        held = _submit(sdk, _lines({"b": _body("b")}))
        _poll(sdk, held.id, lambda b: b.status == "in_progress")
        control.reset()
        assert (control.batches(), control.files()) == ([], [])
        with pytest.raises(openai.NotFoundError):
            sdk.batches.retrieve(held.id)
        with pytest.raises(httpx.HTTPStatusError):
            response = httpx.post(
                base_url.removesuffix("/v1") + "/_control/batches/script",
                json={"behaviours": [{"hold_after": 1}]},
            )
            response.raise_for_status()
