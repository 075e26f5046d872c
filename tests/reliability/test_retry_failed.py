"""``refine run --retry-failed`` through the CLI over real HTTP: the failed ids of an output are
run again in place, each new record appended after its failed one, and every reader of the
output (the resume scan, ``refine eval``, ``refine export``) takes the latest record of an id."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from flows.data.output import OutputLog
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    refine,
    refine_env,
    requests_per_item,
    write_config,
    write_items,
)


def _args(data: Path, out: Path, config: Path, base_url: str, *more: str) -> list[str]:
    return ["run", str(data), "-o", str(out), "--config", str(config), "--base-url", base_url,
            "--model", "m", "--concurrency", "4", *more]  # fmt: skip


def _statuses(out: Path) -> list[tuple[str, str]]:
    """Every line of the output as (id, status), in file order."""
    lines = out.read_text(encoding="utf-8").splitlines()
    return [(record["id"], record["status"]) for record in map(json.loads, lines)]


def _summary(stdout: str) -> dict[str, str]:
    """The run's summary table as label -> value (rich draws it with box characters)."""
    rows: dict[str, str] = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def test_retry_failed_reruns_only_the_failed_ids_in_place_and_every_reader_takes_the_latest(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.script([Reply(status=503)] * 3, match="item-0001")  # until the budget is spent
    fake_server.script([Reply(status=400, content="context overflow")], match="item-0003")
    data = write_items(tmp_path / "data.jsonl", 4)
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=2, max_attempts=3)
    env = refine_env(prefect_server, tmp_path)
    args = _args(data, out, config, fake_server.base_url)

    first = refine(args, env)
    assert first.returncode == 1, first.stderr[-2000:]
    failed_run = out.read_bytes()
    assert dict(_statuses(out)) == {
        "item-0000": "ok", "item-0001": "failed", "item-0002": "ok", "item-0003": "failed",
    }  # fmt: skip
    assert _summary(first.stdout)["failed"] == "2 (+0 in earlier runs)"

    write_items(data, 5)  # an id not yet in the output runs too, as in any resume
    fake_server.clear_log()
    retried = refine([*args, "--retry-failed"], env)
    assert retried.returncode == 0, retried.stdout[-2000:] + retried.stderr[-2000:]
    # only the failed ids and the new one were sent: two steps each, one attempt a step
    assert requests_per_item(fake_server.chat_requests()) == {
        "item-0001": 2, "item-0003": 2, "item-0004": 2,
    }  # fmt: skip
    data_after = out.read_bytes()
    assert data_after.startswith(failed_run)  # appended, never rewritten
    assert sorted(_statuses(out)[4:]) == [
        ("item-0001", "ok"), ("item-0003", "ok"), ("item-0004", "ok"),
    ]  # fmt: skip
    summary = _summary(retried.stdout)
    assert {key: summary[key] for key in ("rows read", "skipped as invalid",
            "already finished (resumed)", "run", "retried (failed before)", "ok", "failed")} == {
        "rows read": "5", "skipped as invalid": "0", "already finished (resumed)": "2",
        "run": "3", "retried (failed before)": "2", "ok": "3", "failed": "0 (+0 in earlier runs)",
    }  # fmt: skip

    with OutputLog(out) as resumed:  # the resume scan: each id once, by its latest record
        assert resumed.finished == {f"item-{i:04d}" for i in range(5)}
        assert resumed.failed == set() and resumed.superseded == 2

    evaluated = refine(["eval", str(out), "--out-dir", str(tmp_path / "eval")], env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "5 items (5 ok, 0 failed)" in " ".join(evaluated.stdout.split())

    to = tmp_path / "steps.jsonl"
    exported = refine(["export", str(out), "--to", str(to)], env)
    assert exported.returncode == 0, exported.stderr[-2000:]
    lines = [json.loads(line) for line in to.read_text(encoding="utf-8").splitlines()]
    assert Counter(line["id"] for line in lines) == {f"item-{i:04d}": 2 for i in range(5)}
    assert "left out 2 earlier record(s) of ids written again" in exported.stdout

    fake_server.clear_log()
    again = refine([*args, "--retry-failed"], env)  # nothing failed is left: nothing to send
    assert again.returncode == 0, again.stderr[-2000:]
    assert fake_server.chat_requests() == [] and out.read_bytes() == data_after
    counts = _summary(again.stdout)
    assert (counts["already finished (resumed)"], counts["run"]) == ("5", "0")


def test_a_retry_that_fails_again_is_recorded_again_and_every_row_is_accounted_for(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    overflow = Reply(status=400, content="context overflow")
    fake_server.script([overflow, overflow], match="item-0001")  # fails in both runs
    data = write_items(tmp_path / "data.jsonl", 3)
    with data.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "broken", "text": \n')  # one invalid row among four
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=1)
    env = refine_env(prefect_server, tmp_path)
    args = _args(data, out, config, fake_server.base_url, "--skip-invalid")

    first = refine(args, env)
    assert first.returncode == 1 and "skipped 1 invalid row(s) of 4 read" in first.stderr
    counts = _summary(first.stdout)
    assert [counts[k] for k in ("rows read", "skipped as invalid", "run")] == ["4", "1", "3"]

    # the option's twin in the config file
    config.write_text("retry_failed = true\n" + config.read_text(encoding="utf-8"))
    fake_server.clear_log()
    retried = refine(args, env)
    assert retried.returncode == 1, retried.stderr[-2000:]
    assert requests_per_item(fake_server.chat_requests()) == {"item-0001": 1}
    statuses = _statuses(out)  # the failed record stays; the new one, failed too, follows it
    assert sorted(statuses[:3]) == [("item-0000", "ok"), ("item-0001", "failed"),
                                    ("item-0002", "ok")]  # fmt: skip
    assert statuses[3:] == [("item-0001", "failed")]
    counts = _summary(retried.stdout)
    assert {k: counts[k] for k in ("rows read", "skipped as invalid",
            "already finished (resumed)", "run", "retried (failed before)", "failed")} == {
        "rows read": "4", "skipped as invalid": "1", "already finished (resumed)": "2",
        "run": "1", "retried (failed before)": "1", "failed": "1 (+0 in earlier runs)",
    }  # fmt: skip

    evaluated = refine(["eval", str(out), "--out-dir", str(tmp_path / "eval")], env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "3 items (2 ok, 1 failed)" in " ".join(evaluated.stdout.split())
