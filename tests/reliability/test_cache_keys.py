"""What the request cache may answer, through ``refine run`` over real HTTP: only the server that
answered (the endpoint is part of every key), and only an answer that was usable (an empty or
cut-off one is asked again by a later run, never replayed)."""

from __future__ import annotations

from pathlib import Path

from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    records_by_id,
    refine,
    refine_env,
    write_config,
    write_items,
)

IDS = ["item-0000", "item-0001"]


def _run(tmp_path: Path, base_url: str, output: str, steps: int = 2) -> list[str]:
    """``refine run`` arguments for the two items on ``base_url``, model ``m``, one cache."""
    data = write_items(tmp_path / "data.jsonl", len(IDS))
    config = write_config(tmp_path / "c.toml", steps=steps)
    return ["run", str(data), "-o", str(tmp_path / output), "--config", str(config),
            "--model", "m", "--base-url", base_url]  # fmt: skip


def test_the_cache_answers_only_for_the_server_that_answered(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    env = refine_env(prefect_server, tmp_path)  # one cache folder for every run below
    fake_server.script([Reply(content="Server A's summary.")] * 4)
    first = refine(_run(tmp_path, fake_server.base_url, "a.jsonl"), env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(fake_server.chat_requests()) == 4

    with FakeOpenAI() as other:  # another port, the same model name, the same cache folder
        other.script([Reply(content="Server B's summary.")] * 4)
        second = refine(_run(tmp_path, other.base_url, "b.jsonl"), env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(other.chat_requests()) == 4  # asked, not answered from A's entries
    records = records_by_id(tmp_path / "b.jsonl", IDS)
    assert {r["output"] for r in records.values()} == {"Server B's summary."}
    assert not any(d["cached"] for r in records.values() for d in r["drafts"])

    # the first server again, its URL spelled with a trailing slash: all from the cache
    fake_server.clear_log()
    third = refine(_run(tmp_path, fake_server.base_url + "/", "a2.jsonl"), env)
    assert third.returncode == 0, third.stderr[-3000:]
    assert fake_server.chat_requests() == []
    records = records_by_id(tmp_path / "a2.jsonl", IDS)
    assert {r["output"] for r in records.values()} == {"Server A's summary."}
    assert all(d["cached"] for r in records.values() for d in r["drafts"])


def test_a_rerun_asks_again_for_answers_that_were_empty_or_cut_off(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    env = refine_env(prefect_server, tmp_path)
    fake_server.script([Reply(content=""), Reply(content="")], match=IDS[0])
    fake_server.script(
        [Reply(content="Half a sen", finish_reason="length"),
         Reply(content="Cut by the filt", finish_reason="content_filter")],
        match=IDS[1],
    )  # fmt: skip
    first = refine(_run(tmp_path, fake_server.base_url, "first.jsonl"), env)
    assert first.returncode == 1, first.stderr[-3000:]
    failed = records_by_id(tmp_path / "first.jsonl", IDS)
    assert {r["status"] for r in failed.values()} == {"failed"}
    assert "empty answer" in failed[IDS[0]]["error"]
    assert "finish_reason=content_filter" in failed[IDS[1]]["error"]
    assert len(fake_server.chat_requests()) == 4

    fake_server.clear_log()  # the server now answers well (its default echo)
    second = refine(_run(tmp_path, fake_server.base_url, "second.jsonl"), env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(fake_server.chat_requests()) == 4  # every request asked again
    records = records_by_id(tmp_path / "second.jsonl", IDS)
    for record in records.values():
        assert record["status"] == "ok" and record["output"].startswith("draft-")
        assert not any(d["cached"] or d["problems"] for d in record["drafts"])
