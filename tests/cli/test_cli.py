"""The ``refine`` CLI as a user runs it: a real subprocess, real HTTP, a real Prefect server."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from tests.cli_helpers import (
    REFINE,
    cli_env,
    fake_server_process,
    kill_when_written,
    read_records,
    run_refine,
)
from tests.fake_openai import FakeOpenAI, FakeOpenAIControl, Reply
from tests.prefect_server import PrefectServer


def write_dataset(path: Path, rows: int) -> Path:
    lines = [
        json.dumps(
            {"id": f"item-{i:04d}", "text": f"Report {i}: the pump at site {i} was repaired."}
        )
        for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_run_writes_records_and_a_summary(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data.jsonl", 4)
    out = tmp_path / "out.jsonl"
    env = cli_env(prefect_server, tmp_path, OPENAI_API_KEY="sk-cli-test-key")
    args = ["run", str(data), "--task", "summarize", "--steps", "2", "-o", str(out)]
    result = run_refine([*args, "--base-url", fake_server.base_url, "--model", "m"], env)
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert sorted(r["id"] for r in records) == [f"item-{i:04d}" for i in range(4)]
    assert all(r["status"] == "ok" and len(r["drafts"]) == 2 for r in records)
    assert "HTTP requests" in result.stdout and "ok" in result.stdout
    assert {e.headers["authorization"] for e in fake_server.chat_requests()} == {
        "Bearer sk-cli-test-key"
    }
    assert "sk-cli-test-key" not in result.stdout + result.stderr + out.read_text()


def test_exit_code_1_when_some_items_fail(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.script([Reply(status=400, content="context overflow")], match="site 2 ")
    data = write_dataset(tmp_path / "data.jsonl", 3)
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "--task", "summarize", "--steps", "2", "-o", str(out)]
    result = run_refine(
        [*args, "--base-url", fake_server.base_url, "--model", "m"],
        cli_env(prefect_server, tmp_path),
    )
    assert result.returncode == 1
    statuses = {r["id"]: r["status"] for r in read_records(out)}
    assert statuses == {"item-0000": "ok", "item-0001": "ok", "item-0002": "failed"}


def test_bad_input_exits_2_with_file_and_line_and_sends_nothing(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "1", "text": "fine"}\n{"id": "2", "text": \n{"id": "3"}\n')
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "--task", "summarize", "-o", str(out)]
    result = run_refine(
        [*args, "--base-url", fake_server.base_url, "--model", "m"],
        cli_env(prefect_server, tmp_path),
    )
    assert result.returncode == 2
    assert f"{data}:line 2" in result.stderr and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert fake_server.chat_requests() == [] and not out.exists()


def test_401_stops_the_run_with_one_clear_message(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.fail_rate(401, 1.0)
    data = write_dataset(tmp_path / "data.jsonl", 20)
    args = ["run", str(data), "--task", "summarize", "-o", str(tmp_path / "out.jsonl")]
    result = run_refine(
        [*args, "--base-url", fake_server.base_url, "--model", "m", "--concurrency", "4"],
        cli_env(prefect_server, tmp_path, OPENAI_API_KEY="sk-wrong"),
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "401" in errors[0] and "API key" in errors[0]
    assert "Traceback" not in result.stderr and "sk-wrong" not in result.stderr
    assert len(fake_server.chat_requests()) <= 4  # at most the requests already in flight


def test_templates_commands_call_nothing(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    env = cli_env(prefect_server, tmp_path, OPENAI_BASE_URL=fake_server.base_url)
    listed = run_refine(["templates", "list"], env)
    assert listed.returncode == 0 and "summarize/refine.j2" in listed.stdout
    shown = run_refine(["templates", "show", "qa/initial.j2"], env)
    assert shown.returncode == 0 and '{% include "qa/input.j2" %}' in shown.stdout
    assert "prompts/qa/initial.j2" in shown.stderr
    data = write_dataset(tmp_path / "data.jsonl", 3)
    rendered = run_refine(
        ["templates", "render", "summarize", "--input", str(data), "--line", "2", "--step", "2"],
        env,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "the pump at site 1 was repaired" in rendered.stdout
    assert "[draft of step 1]" in rendered.stdout
    missing = run_refine(
        ["templates", "render", "summarize", "--input", str(data), "--line", "9"], env
    )
    assert missing.returncode == 2 and "line 9" in missing.stderr
    bad_step = run_refine(
        ["templates", "render", "summarize", "--input", str(data), "--step", "0"], env
    )
    assert bad_step.returncode == 2 and "Traceback" not in bad_step.stderr
    assert fake_server.chat_requests() == []


def test_a_rerun_over_failed_records_still_exits_1_and_asks_nothing(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.script([Reply(status=400, content="context overflow")], match="site 1 ")
    data = write_dataset(tmp_path / "data.jsonl", 2)
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "--task", "summarize", "--steps", "1", "-o", str(out)]
    args += ["--base-url", fake_server.base_url]
    env = cli_env(prefect_server, tmp_path, REFINE_MODEL="m")
    assert run_refine(args, env).returncode == 1
    sent = len(fake_server.chat_requests())
    again = run_refine(args, env)
    assert again.returncode == 1 and "+1 in earlier runs" in again.stdout
    assert len(fake_server.chat_requests()) == sent and len(read_records(out)) == 2


def test_no_cache_flag_sends_every_request_again(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data.jsonl", 2)
    env = cli_env(prefect_server, tmp_path)
    base = ["run", str(data), "--task", "summarize", "--steps", "2"]
    base += ["--base-url", fake_server.base_url, "--model", "m"]
    assert run_refine([*base, "-o", str(tmp_path / "a.jsonl")], env).returncode == 0
    assert run_refine([*base, "-o", str(tmp_path / "b.jsonl")], env).returncode == 0
    assert len(fake_server.chat_requests()) == 4  # the second run came from the cache
    assert run_refine([*base, "-o", str(tmp_path / "c.jsonl"), "--no-cache"], env).returncode == 0
    assert len(fake_server.chat_requests()) == 8


def test_unusable_paths_exit_2_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data.jsonl", 2)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    env = cli_env(prefect_server, tmp_path)
    base = ["run", str(data), "--task", "summarize", "--base-url", fake_server.base_url]
    base += ["--model", "m"]
    cache = run_refine([*base, "-o", str(tmp_path / "o.jsonl"), "--cache-dir", str(a_file)], env)
    assert cache.returncode == 2 and "not writable" in cache.stderr and str(a_file) in cache.stderr
    folder = run_refine([*base, "-o", str(tmp_path)], env)
    assert folder.returncode == 2 and "cannot write the output" in folder.stderr
    no_model = run_refine(
        ["run", str(data), "--task", "summarize", "--base-url", fake_server.base_url], env
    )
    assert no_model.returncode == 2 and "[endpoint] model" in no_model.stderr
    for result in (cache, folder, no_model):
        assert "Traceback" not in result.stderr
    assert fake_server.chat_requests() == []


def test_ephemeral_prefect_needs_no_server(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    """The README's first command: no PREFECT_API_URL, Prefect starts a temporary server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        REFINE_CACHE_DIR=str(tmp_path / "cache"),
    )  # analytics left at Prefect's default: refine itself keeps the temporary server offline
    data = write_dataset(tmp_path / "data.jsonl", 3)
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "--task", "summarize", "--steps", "2", "-o", str(out)]
    result = run_refine([*args, "--base-url", fake_server.base_url, "--model", "m"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(read_records(out)) == 3 and len(fake_server.chat_requests()) == 6
    assert "Traceback" not in result.stderr
    assert "telemetry" not in result.stderr  # no machine here reaches Prefect's analytics


def test_resume_after_sigkill_writes_each_item_once_and_resends_only_in_flight(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data.jsonl", 200)
    out = tmp_path / "out.jsonl"
    with fake_server_process("--latency-ms", "50") as base_url:
        control = FakeOpenAIControl(base_url)
        env = cli_env(prefect_server, tmp_path)
        args = [REFINE, "run", str(data), "--task", "summarize", "--steps", "3", "-o", str(out)]
        args += [
            "--base-url",
            base_url,
            "--model",
            "m",
            "--concurrency",
            "16",
            "--chunk-size",
            "10",
        ]
        killed_at = kill_when_written(args, env, out, records=100)
        written_before = out.read_bytes().count(b"\n")
        assert 100 <= written_before < 200

        resumed = run_refine(args[1:], env)
        assert resumed.returncode == 0, resumed.stderr
        records = read_records(out)
        ids = Counter(r["id"] for r in records)
        assert len(records) == 200 and set(ids.values()) == {1}
        answers: dict[str, list[float]] = {}
        for entry in control.chat_requests():
            if entry.status == 200 and entry.answered is not None:
                answers.setdefault(json.dumps(entry.body, sort_keys=True), []).append(
                    entry.answered
                )
        assert len(answers) == 600  # 200 items x 3 steps
        # Only a request in flight at the kill (answered on the wire, not yet cached by the
        # client) may be asked again; every answer the client had received was never re-sent.
        twice = [times for times in answers.values() if len(times) > 1]
        assert len(twice) <= 16 and all(len(times) == 2 for times in twice)
        assert all(times[0] > killed_at - 0.2 for times in twice)
