"""``refine run --batch-api`` killed or stopped while a batch is in progress, then started again:
the restart re-attaches to the batches it finds in the journal, so no request is submitted (or
answered) twice, and every item ends with one record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import openai

from tests.cli_helpers import REFINE, fake_server_process
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    no_secret_anywhere,
    records_by_id,
    refine,
    refine_env,
    write_config,
    write_items,
)

ITEMS = 30


def _setup(tmp_path: Path, base_url: str) -> tuple[list[str], Path, list[str]]:
    data = write_items(tmp_path / "data.jsonl", ITEMS)
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", steps=3)
    with config.open("a") as file:
        file.write("\n[batch]\npoll_initial_s = 0.1\npoll_max_s = 0.3\n")
    command = [REFINE, "run", str(data), "-o", str(out), "--config", str(config),
               "--base-url", base_url, "--model", "m", "--batch-api", "--quiet"]  # fmt: skip
    return command, out, [f"item-{i:04d}" for i in range(ITEMS)]


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def _polls(control: FakeOpenAIControl) -> int:
    return sum(e.method == "GET" and e.path.startswith("/v1/batches/") for e in control.requests)


def _wait_for(condition: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _held_and_polled(control: FakeOpenAIControl, polls: int) -> bool:
    batches = control.batches()
    return (
        len(batches) == 1
        and batches[0]["status"] == "in_progress"
        and batches[0]["request_counts"]["completed"] >= 10
        and _polls(control) >= polls
    )


def _answered_ids(base_url: str, control: FakeOpenAIControl) -> Counter[str]:
    """How often each ``custom_id`` was answered, over every batch's output file."""
    sdk = openai.OpenAI(base_url=base_url, api_key="x")
    answered: Counter[str] = Counter()
    for batch in control.batches():
        if batch.get("output_file_id"):
            data = sdk.files.content(batch["output_file_id"]).content
            answered.update(json.loads(line)["custom_id"] for line in data.splitlines())
    return answered


def test_kill_9_while_polling_then_the_restart_submits_nothing_new(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    with fake_server_process() as base_url:
        control = FakeOpenAIControl(base_url)
        control.script_batches([{"hold_after_lines": 10}])  # step 1's batch stops halfway
        command, out, ids = _setup(tmp_path, base_url)
        env = refine_env(prefect_server, tmp_path, PREFECT_LOGGING_LEVEL="INFO")
        run = _start(command, env)
        _wait_for(lambda: _held_and_polled(control, 2), "the first batch to be polled")
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        assert len(control.batches()) == 1
        journal = out.with_name("out.jsonl.batches.jsonl").read_text()
        assert control.batches()[0]["id"] in journal

        restart = _start(command, env)
        polled = _polls(control)
        _wait_for(lambda: _polls(control) > polled, "the restart to poll the batch")
        assert len(control.batches()) == 1  # re-attached, not submitted again
        control.release_batches()
        stdout, stderr = restart.communicate(timeout=120)
        assert restart.returncode == 0, stderr[-3000:]
        assert f"re-attached to batch {control.batches()[0]['id']}" in stderr
        assert "batches re-attached" in stdout  # the summary table
        batches = control.batches()
        posts = [e for e in control.requests if e.method == "POST" and e.path == "/v1/batches"]
        answered = _answered_ids(base_url, control)
    assert len(batches) == len(posts) == 3  # one per step, the kill cost none
    assert all(b["status"] == "completed" for b in batches)
    assert sum(answered.values()) == 3 * ITEMS and max(answered.values()) == 1
    records = records_by_id(out, ids)
    assert all(r["status"] == "ok" and len(r["drafts"]) == 3 for r in records.values())
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[stdout, stderr])


def test_a_stopped_run_cancels_its_batch_and_the_restart_keeps_what_it_answered(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    with fake_server_process() as base_url:
        control = FakeOpenAIControl(base_url)
        control.script_batches([{"hold_after_lines": 10}])
        command, out, ids = _setup(tmp_path, base_url)
        env = refine_env(prefect_server, tmp_path)
        run = _start(command, env)
        _wait_for(lambda: _held_and_polled(control, 1), "the first batch to be polled")
        os.kill(run.pid, signal.SIGTERM)  # as a scheduler or a Prefect cancel stops it
        try:
            _, stderr = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            stderr = run.communicate()[1][-3000:]
            raise AssertionError(f"the stopped run did not end: {stderr}") from None
        assert run.returncode != 0
        first = control.batches()[0]
        assert first["status"] in ("cancelling", "cancelled"), stderr[-2000:]
        assert "cancel" in stderr and first["id"] in stderr

        result = refine(command[1:], env, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        answered = _answered_ids(base_url, control)
        batches = control.batches()
    # step 1: the cancelled batch's 10 answers kept, the other 20 in a new batch; then 2 steps
    assert len(batches) == 4 and batches[0]["status"] == "cancelled"
    assert sum(answered.values()) == 3 * ITEMS and max(answered.values()) == 1
    records = records_by_id(out, ids)
    assert all(r["status"] == "ok" and len(r["drafts"]) == 3 for r in records.values())


def test_online_on_the_command_line_wins_over_batch_mode_in_the_config(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    with fake_server_process() as base_url:
        control = FakeOpenAIControl(base_url)
        command, out, ids = _setup(tmp_path, base_url)
        config = Path(command[command.index("--config") + 1])
        config.write_text('mode = "batch"\n' + config.read_text())
        online = [arg for arg in command if arg != "--batch-api"] + ["--online"]
        result = refine(online[1:], refine_env(prefect_server, tmp_path), timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        assert control.batches() == []
        assert len(control.chat_requests()) == 3 * ITEMS
    assert len(records_by_id(out, ids)) == ITEMS
