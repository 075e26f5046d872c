"""Step-major refinement through the Batch API (``mode = "batch"``) against the fake server's
real ``/v1/files`` and ``/v1/batches`` over HTTP, and a real Prefect server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch
from flows.config.batch import BatchConfig
from flows.config.run import EnvironmentSettings, build_run_config
from flows.llm.batch_files import split_lines
from flows.llm.batch_journal import BatchJournal, journal_path
from flows.ui.run_stats import read_run_stats
from refine.errors import ConfigError, FatalEndpointError
from tests.batch_helpers import make_config, read_records, task_runs_of, write_rows
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")

FAST = BatchConfig(poll_initial_s=0.05, poll_max_s=0.2)


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"i{i:04d}", "text": f"Report {i}: the river rose {i % 7} metres after the storm."}
        for i in range(n)
    ]


def batch_config(server: FakeOpenAI, tmp_path: Path, **changes: Any) -> Any:
    return make_config(server, tmp_path, mode="batch", batch=changes.pop("batch", FAST), **changes)


def online_chats(server: FakeOpenAI) -> list[Any]:
    """Chat requests sent online (not answered as a line of a batch)."""
    return [e for e in server.chat_requests() if e.batch_id is None]


def batch_inputs(server: FakeOpenAI) -> list[list[str]]:
    """The ``custom_id`` of each request of each batch created, batch by batch."""
    return [
        [
            json.loads(line)["custom_id"]
            for line in server.file_content(b["input_file_id"]).splitlines()
        ]
        for b in server.batches()
    ]


def drafts_of(path: Path) -> dict[str, list[tuple[int, str, str]]]:
    return {
        r["id"]: [(d["step"], d["kind"], d["text"]) for d in r["drafts"]]
        for r in read_records(path)
    }


@pytest.mark.slow
async def test_a_thousand_items_in_three_steps_match_the_online_run(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(1000))
    online_out, batch_out = tmp_path / "online.jsonl", tmp_path / "batch.jsonl"
    online = make_config(fake_server, tmp_path, cache_dir=tmp_path / "c1", concurrency=64)
    await refine_batch(data, online_out, online)
    fake_server.reset()

    config = batch_config(fake_server, tmp_path, cache_dir=tmp_path / "c2")
    summary = await refine_batch(data, batch_out, config)

    assert summary.ok == 1000 and summary.failed == 0 and summary.mode == "batch"
    records = read_records(batch_out)
    assert sorted(r["id"] for r in records) == [f"i{i:04d}" for i in range(1000)]
    assert drafts_of(batch_out) == drafts_of(online_out)  # the same drafts, step by step
    assert all("tokens at batch price" not in row for row in read_run_stats(online_out).rows())
    # nothing went online; one batch per step, each request in exactly one batch
    assert online_chats(fake_server) == []
    inputs = batch_inputs(fake_server)
    assert [len(ids) for ids in inputs] == [1000, 1000, 1000]
    assert max(Counter(i for ids in inputs for i in ids).values()) == 1
    assert summary.batches_submitted == 3 and summary.batch_requests == 3000
    # every request's usage is marked batch-priced, and the summary counts them all
    usages = [d["usage"] for r in records for d in r["drafts"]]
    assert all(u.get("batch") is True for u in usages)
    assert summary.batch_tokens == summary.prompt_tokens + summary.completion_tokens > 0
    # answers went to the request cache: the same data online now sends nothing
    fake_server.reset()
    again = await refine_batch(
        data, tmp_path / "again.jsonl", config.model_copy(update={"mode": "online"})
    )
    assert again.ok == 1000 and fake_server.chat_requests() == [] and again.cache_hits == 3000


@pytest.mark.parametrize(
    "changes",
    [
        {"critique": {"enabled": True}, "samples": 1},
        {"samples": 3, "endpoint": {"temperature": 0.7, "seed": 1}},
        {"samples": 3, "endpoint": {"temperature": 0.7, "seed": 1, "supports_n": True}},
    ],
    ids=["critique", "best-of-3", "best-of-3-with-n"],
)
async def test_critiques_and_candidates_come_in_later_rounds_with_the_online_drafts(
    fake_server: FakeOpenAI, tmp_path: Path, changes: dict[str, Any]
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(8))
    endpoint = {
        "base_url": fake_server.base_url,
        "model": "fake-model",
        **changes.get("endpoint", {}),
    }
    settings = {**changes, "endpoint": endpoint}
    online = make_config(fake_server, tmp_path, cache_dir=tmp_path / "c1", **settings)
    await refine_batch(data, tmp_path / "online.jsonl", online)
    online_requests = len(fake_server.chat_requests())
    fake_server.reset()
    config = batch_config(fake_server, tmp_path, cache_dir=tmp_path / "c2", **settings)
    summary = await refine_batch(data, tmp_path / "batch.jsonl", config)
    assert summary.ok == 8 and online_chats(fake_server) == []
    assert drafts_of(tmp_path / "batch.jsonl") == drafts_of(tmp_path / "online.jsonl")
    assert len(fake_server.chat_requests()) == online_requests  # the same requests, batched
    records = read_records(tmp_path / "batch.jsonl")
    if "critique" in changes:  # each step's drafts, then its critiques: two batches a step
        assert len(fake_server.batches()) == 2 * 3 - 1  # no critique after the last step
        assert all(
            d["side_requests"][0]["usage"]["batch"] for r in records for d in r["drafts"][:-1]
        )
    else:  # the N candidates of a step share one batch
        assert len(fake_server.batches()) == 3
        assert all(
            c["usage"]["batch"] for r in records for d in r["drafts"] for c in d["candidates"]
        )


async def test_one_task_per_step_with_a_progress_artifact(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    data = write_rows(tmp_path / "data.jsonl", _rows(12))
    fake_server.script_batches([{"line_delay_s": 0.02}] * 3)  # progress is seen mid-batch
    state = await refine_batch(
        data, tmp_path / "out.jsonl", batch_config(fake_server, tmp_path), return_state=True
    )
    runs = await task_runs_of(state, 3)
    assert sorted(r.name for r in runs) == ["batch-step-1", "batch-step-2", "batch-step-3"]
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    progress = [a for a in artifacts if a.type == "progress" and a.task_run_id is not None]
    assert len(progress) == 3
    assert all(a.data == 100.0 for a in progress)
    assert any("12 of 12 requests answered" in (a.description or "") for a in progress)


async def test_requests_a_batch_did_not_answer_are_resubmitted_once(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(6))
    fake_server.script([Reply(status=500)], match="Report 2:")  # one error line
    fake_server.script_batches([{"expire_after_lines": 3}])  # the first batch expires halfway
    summary = await refine_batch(
        data, tmp_path / "out.jsonl", batch_config(fake_server, tmp_path, steps=1)
    )
    assert summary.ok == 6 and online_chats(fake_server) == []
    first, second = batch_inputs(fake_server)
    assert len(first) == 6 and len(second) == 4  # the error line and the 3 left by expiry
    assert set(second) < set(first)
    records = {r["id"]: r for r in read_records(tmp_path / "out.jsonl")}
    assert records["i0002"]["drafts"][0]["attempts"] == 2  # in two batches
    assert records["i0000"]["drafts"][0]["attempts"] == 1


async def test_with_online_fallback_what_a_batch_left_is_sent_online(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(6))
    fake_server.script_batches([{"expire_after_lines": 4}])
    config = batch_config(fake_server, tmp_path, steps=1, batch_fallback="online")
    summary = await refine_batch(data, tmp_path / "out.jsonl", config)
    assert summary.ok == 6 and summary.answered_online == 2
    assert len(fake_server.batches()) == 1 and len(online_chats(fake_server)) == 2
    usages = [r["drafts"][0]["usage"] for r in read_records(tmp_path / "out.jsonl")]
    assert sorted(u.get("batch", False) for u in usages) == [False] * 2 + [True] * 4
    assert summary.batch_tokens < summary.prompt_tokens + summary.completion_tokens
    (row,) = read_run_stats(tmp_path / "out.jsonl").rows()  # the run's per-step table artifact
    assert row["tokens at batch price"] == summary.batch_tokens < row["tokens"]


async def test_a_request_refused_in_every_batch_fails_its_item_only(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(4))
    fake_server.script([Reply(status=500)] * 5, match="Report 1:")
    fake_server.script([Reply(status=400, content="bad field")], match="Report 3:")
    summary = await refine_batch(
        data, tmp_path / "out.jsonl", batch_config(fake_server, tmp_path, steps=1)
    )
    records = {r["id"]: r for r in read_records(tmp_path / "out.jsonl")}
    assert summary.ok == 2 and summary.failed == 2
    assert "no answer after 3 batch(es)" in records["i0001"]["error"]  # max_attempts = 3
    assert "answered 400" in records["i0003"]["error"] and "bad field" in records["i0003"]["error"]
    assert len(fake_server.batches()) == 3  # 400 is not asked again; the 500 thrice


async def test_files_are_split_at_the_request_limit(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(10))
    batch = BatchConfig(poll_initial_s=0.05, poll_max_s=0.2, max_requests_per_file=4)
    out = tmp_path / "out.jsonl"
    summary = await refine_batch(
        data, out, batch_config(fake_server, tmp_path, steps=1, batch=batch)
    )
    assert summary.ok == 10
    assert [len(ids) for ids in batch_inputs(fake_server)] == [4, 4, 2]
    kept = sorted(out.with_name("out.jsonl.batches").glob("*.jsonl"))
    assert len(kept) == 3  # a copy of each input file, for vllm run-batch
    assert sum(len(p.read_bytes().splitlines()) for p in kept) == 10


def test_split_by_bytes_and_a_request_too_big_for_any_file() -> None:
    lines = [(f"r{i}", b"x" * 400 + b"\n") for i in range(5)]
    assert [len(part) for part in split_lines(lines, 100, 1024)] == [2, 2, 1]
    with pytest.raises(ConfigError, match="r0 is 401 bytes"):
        split_lines(lines, 100, 400)


async def test_a_batch_failing_validation_stops_the_run_with_its_reason(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(3))
    fake_server.script_batches([{"fail_validation": "the model field is not allowed"}])
    with pytest.raises(FatalEndpointError, match="failed validation.*model field is not allowed"):
        await refine_batch(data, tmp_path / "out.jsonl", batch_config(fake_server, tmp_path))
    assert len(fake_server.batches()) == 1
    assert not (tmp_path / "out.jsonl").exists() or read_records(tmp_path / "out.jsonl") == []


async def test_a_batch_the_provider_refuses_to_create_stops_the_run_once(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(5))
    fake_server.script_batches([{"create_status": 400}])
    config = batch_config(fake_server, tmp_path, batch=BatchConfig(completion_window="1h"))
    with pytest.raises(FatalEndpointError, match=r"refused creating a batch \(400\): Fake error"):
        await refine_batch(data, tmp_path / "out.jsonl", config)
    assert not (tmp_path / "out.jsonl").exists() or read_records(tmp_path / "out.jsonl") == []


def test_batch_mode_without_an_endpoint_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("REFINE_BASE_URL", "OPENAI_BASE_URL", "REFINE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="needs an endpoint with a Batch API.*embedded"):
        build_run_config({"mode": "batch"}, env=EnvironmentSettings())


async def test_an_endpoint_without_a_batch_api_is_one_clear_error(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(3))
    fake_server.script_batches([{"create_status": 404}])
    with pytest.raises(FatalEndpointError, match="has no Batch API.*without --batch-api"):
        await refine_batch(data, tmp_path / "out.jsonl", batch_config(fake_server, tmp_path))


def test_a_torn_last_journal_line_is_ignored_and_a_bad_one_named(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "out.jsonl")
    journal = BatchJournal(path)
    journal.uploaded("file-1", "http://e:80/v1", 1, ["a", "b"])
    journal.submitted("file-1", "batch_1")
    with path.open("ab") as file:
        file.write(b'{"event": "closed", "batch_')  # killed mid-write
    again = BatchJournal(path)
    assert again.latest_holding("http://e:80/v1")["a"].batch_id == "batch_1"
    assert again.latest_holding("http://other:80/v1") == {}
    path.write_bytes(b"not json\n" + path.read_bytes())
    with pytest.raises(ConfigError, match=r"out.jsonl.batches.jsonl, line 1: not a batch journal"):
        BatchJournal(path)


async def test_a_batch_created_but_not_journaled_is_found_in_the_providers_list(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(4))
    out = tmp_path / "out.jsonl"
    await refine_batch(data, out, batch_config(fake_server, tmp_path, steps=1))
    # as if killed between POST /v1/batches and the journal's line for it: the batch exists
    journal = journal_path(out)
    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n")  # only "uploaded" survives
    assert json.loads(lines[0])["event"] == "uploaded"
    out.unlink()
    created = len(fake_server.batches())

    again = batch_config(fake_server, tmp_path, steps=1, cache_dir=tmp_path / "fresh-cache")
    summary = await refine_batch(data, out, again)
    assert summary.ok == 4 and summary.batches_submitted == 0
    assert len(fake_server.batches()) == created == 1  # found by its input file, not resubmitted
    assert online_chats(fake_server) == []
    assert '"event": "submitted"' in journal.read_text().replace('":"', '": "')


async def test_identical_requests_are_asked_once_and_billed_once(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [{"id": f"d{i}", "text": "The same report, six times over."} for i in range(6)]
    data = write_rows(tmp_path / "data.jsonl", rows)
    summary = await refine_batch(data, tmp_path / "out.jsonl", batch_config(fake_server, tmp_path))
    assert summary.ok == 6 and [len(ids) for ids in batch_inputs(fake_server)] == [1, 1, 1]
    records = read_records(tmp_path / "out.jsonl")
    paid = [d for r in records for d in r["drafts"] if not d["cached"]]
    assert len(paid) == 3  # one item's three steps; the other five got those answers free
    assert all(d["attempts"] == 0 for r in records for d in r["drafts"] if d["cached"])
    sent = sum(e.body is not None and e.batch_id is not None for e in fake_server.chat_requests())
    billed = sum(d["usage"]["prompt_tokens"] + d["usage"]["completion_tokens"] for d in paid)
    assert sent == 3 and summary.batch_tokens == billed
    assert summary.prompt_tokens + summary.completion_tokens == billed


async def test_a_journaled_batch_the_provider_no_longer_knows_is_asked_again(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", _rows(4))
    out = tmp_path / "out.jsonl"
    await refine_batch(data, out, batch_config(fake_server, tmp_path, steps=1))
    journal = journal_path(out)
    known = fake_server.batches()[0]["id"]
    journal.write_text(journal.read_text().replace(known, "batch_deleted_by_the_provider"))
    out.unlink()
    again = batch_config(fake_server, tmp_path, steps=1, cache_dir=tmp_path / "fresh-cache")
    summary = await refine_batch(data, out, again)  # a 404 on its id: lost, not "no Batch API"
    assert summary.ok == 4 and summary.batches_submitted == 1
    assert len(fake_server.batches()) == 2
