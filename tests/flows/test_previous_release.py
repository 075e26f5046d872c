"""Files written by the previous release (commit 278d65d) still resume; its cache misses once.

The fixtures in ``tests/fixtures/previous_release`` (see its README) were written by that release's
``refine run``: a torn output of 2 finished items, and the request cache of all 4 items. Since
issue 15 a cache key names the endpoint that answered (two servers behind one model name answered
from each other's entries before), so none of that release's entries can be served: each of its
requests is asked once more, and the same messages get the same answers from the fake server's
echo policy, which shows the prompts and the output format unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.cli_helpers import cli_env, read_records, run_refine
from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "previous_release"
IDS = ["pump", "budget", "trial", "ferry"]


def copy_fixtures(tmp_path: Path) -> Path:
    """A private copy of the fixtures (a run writes into its output and cache folder)."""
    return Path(shutil.copytree(FIXTURES, tmp_path / "previous"))


def cached_answers(cache: Path) -> set[str]:
    """The answer texts stored in a cache folder written by the previous release."""
    entries = [json.loads(p.read_text(encoding="utf-8")) for p in cache.glob("*/*.json")]
    return {entry["answer"]["content"] for entry in entries}


def refine_run(fixtures: Path, server: FakeOpenAI, output: Path, env: dict[str, str]) -> Any:
    """The previous release's command line, on another base URL."""
    args = ["run", str(fixtures / "data.jsonl"), "--task", "summarize", "--steps", "2"]
    args += ["--model", "fixture-model", "--base-url", server.base_url]
    args += ["--cache-dir", str(fixtures / "cache"), "-o", str(output), "--quiet"]
    args += ["--template-dir", str(fixtures / "templates")]  # the prompts of that release
    return run_refine(args, env)


def check_asked_again(record: dict[str, Any], answers: set[str], *, cached: bool) -> None:
    """``record`` is a finished item whose two drafts are the answers the old cache holds, asked
    again (``cached=False``: the old entries were not served) or from the new entries."""
    assert record["status"] == "ok", record.get("error")
    assert [d["step"] for d in record["drafts"]] == [1, 2]
    for draft in record["drafts"]:
        assert draft["cached"] is cached and draft["text"] in answers
        assert set(draft["rewards"]) == {"rouge_l"}
    assert record["output"] == record["drafts"][-1]["text"]


def test_a_torn_output_of_the_previous_release_resumes(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fixtures = copy_fixtures(tmp_path)
    output = fixtures / "out.jsonl"
    before = output.read_bytes()
    finished = before[: before.rindex(b"\n") + 1]  # the two whole records, without the torn tail
    assert finished.count(b"\n") == 2 and len(before) > len(finished)

    result = refine_run(fixtures, fake_server, output, cli_env(prefect_server, tmp_path))

    assert len(fake_server.chat_requests()) == 4  # 2 steps of the 2 unfinished items only
    assert result.returncode == 0, result.stderr[-3000:]
    after = output.read_bytes()
    assert after.startswith(finished)  # the finished records are kept byte for byte
    records = read_records(output)  # every line parses: the torn tail was cut, not kept
    assert [r["id"] for r in records[:2]] == ["pump", "budget"]
    assert sorted(r["id"] for r in records) == sorted(IDS)
    answers = cached_answers(FIXTURES / "cache")
    for record in records[2:]:
        check_asked_again(record, answers, cached=False)


def test_a_fresh_output_over_the_previous_release_cache_asks_once_then_nothing(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fixtures = copy_fixtures(tmp_path)
    output = tmp_path / "fresh.jsonl"
    env = cli_env(prefect_server, tmp_path)

    result = refine_run(fixtures, fake_server, output, env)

    assert len(fake_server.chat_requests()) == 8  # every old entry missed once
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["id"]: r for r in read_records(output)}
    assert sorted(records) == sorted(IDS) and len(read_records(output)) == 4
    answers = cached_answers(FIXTURES / "cache")
    for record in records.values():
        check_asked_again(record, answers, cached=False)
    old_lines = (FIXTURES / "out.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    for old in map(json.loads, old_lines):  # the same drafts as the previous release wrote
        new = records[old["id"]]
        assert [d["text"] for d in new["drafts"]] == [d["text"] for d in old["drafts"]]
        assert new["output"] == old["output"] and new["stop_reason"] == old["stop_reason"]

    fake_server.clear_log()  # the entries this run wrote answer the next one
    again = tmp_path / "again.jsonl"
    result = refine_run(fixtures, fake_server, again, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert fake_server.chat_requests() == []
    for record in read_records(again):
        check_asked_again(record, answers, cached=True)
