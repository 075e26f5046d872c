"""The embedded model for real: llama-cpp-python serving Qwen2.5-Coder 0.5B Instruct here.

Marked ``local_model``: they need the ``[local]`` extra and take about a minute. `.ci/run`
runs them; deselect them locally with ``-m "not local_model"``. Every process a test starts
carries a unique environment marker, so "no process left behind" is checked exactly, without
being fooled by a model server someone else runs on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.cli_helpers import REFINE, cli_env, read_records, run_refine
from tests.prefect_server import PrefectServer

pytestmark = pytest.mark.local_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


DEFAULT_ALIAS = "qwen2.5-coder-0.5b-instruct-q4_k_m"


def _require_extra() -> None:
    import importlib.util

    from flows.local.assembly import missing_packages
    from flows.local.catalogue import DEFAULT_MODEL, find_entry

    missing = missing_packages(find_entry(DEFAULT_MODEL))
    if importlib.util.find_spec("llama_cpp") is None:
        missing.insert(0, "llama_cpp")
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: pip install -e '.[local]', "
            "or deselect these tests with -m 'not local_model'"
        )


def _processes_with(marker: str) -> dict[int, str]:
    """Live processes whose environment holds ``marker``: pid to command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            status = (entry / "status").read_text()
            if "\nState:\tZ" in status:  # a zombie holds no resources; its parent reaps it
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _wait_until_gone(marker: str, timeout: float = 20.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture
def marked_env(prefect_server: PrefectServer, tmp_path: Path) -> Iterator[tuple[dict, str]]:
    """An environment with no endpoint, no key, and a marker every child process inherits."""
    _require_extra()
    marker = f"refine-test-{uuid.uuid4().hex}"
    env = cli_env(prefect_server, tmp_path, REFINE_TEST_MARKER=marker)
    yield env, f"REFINE_TEST_MARKER={marker}"
    for pid in _processes_with(f"REFINE_TEST_MARKER={marker}"):  # a failed test leaks nothing
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


PLOTS = ("reward_per_step.png", "cost_quality.png", "stop_reasons.png")


def _first_rows(source: Path, count: int, target: Path) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:count]))
    return target


def test_refine_run_serves_the_local_model_and_stops_it(
    marked_env: tuple[dict, str], tmp_path: Path
) -> None:
    env, marker = marked_env
    dataset = _first_rows(EXAMPLES / "qa.jsonl", 3, tmp_path / "qa3.jsonl")
    output = tmp_path / "out.jsonl"
    result = run_refine(
        ["run", str(dataset), "--task", "qa", "--steps", "2", "-o", str(output), "--no-cache"],
        env,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: the tiny model failed an item
    assert f"serving the local model {DEFAULT_ALIAS}" in " ".join(result.stderr.split())
    records = read_records(output)
    assert sorted(r["id"] for r in records) == ["qa-01", "qa-02", "qa-03"]
    for record in records:
        assert 1 <= len(record["drafts"]) <= 2
        assert all(d["text"] is not None for d in record["drafts"])
        assert all(d["usage"]["prompt_tokens"] > 0 for d in record["drafts"])
        assert sum(d["usage"]["completion_tokens"] for d in record["drafts"]) > 0
        assert not any(d["cached"] for d in record["drafts"])
    assert _wait_until_gone(marker, timeout=5) == {}

    # the model's real output feeds refine eval and refine export (issue "Evaluation and export")
    evaluated = run_refine(["eval", str(output), "--out-dir", str(tmp_path / "ev")], env)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["items"] == 3 and report["primary"] == "token_f1"
    assert report["steps"][0]["rewards"]["token_f1"]["n"] >= 1
    assert report["steps"][0]["cum_tokens_mean"] > 0
    assert all((tmp_path / "ev" / name).stat().st_size > 5_000 for name in PLOTS)
    exported = run_refine(
        ["export", str(output), "--format", "sft", "--to", str(tmp_path / "sft.jsonl"),
         "--input", str(dataset), "--task", "qa"],
        env,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    for line in (tmp_path / "sft.jsonl").read_text().splitlines():
        roles = [message["role"] for message in json.loads(line)["messages"]]
        # the system message, the few-shot demos as earlier turns, the question, the answer
        assert roles[0] == "system" and len(roles) % 2 == 1
        assert roles[1:] == ["user", "assistant"] * (len(roles) // 2)


TEMPLATE_TEXT = ("<text>", "<draft", "Your earlier drafts", "Examples of good summaries")


def test_the_instruct_model_answers_without_echoing_the_prompt_template(
    marked_env: tuple[dict, str], tmp_path: Path
) -> None:
    """With the GGUF's own chat template the answers are summaries, not the prompt's scaffolding
    (with the old alpaca format and ``###`` stops an instruct model's first token ended them)."""
    env, _ = marked_env
    dataset = _first_rows(EXAMPLES / "summarize.jsonl", 2, tmp_path / "sum2.jsonl")
    output = tmp_path / "out.jsonl"
    result = run_refine(
        ["run", str(dataset), "--task", "summarize", "--steps", "2", "-o", str(output),
         "--no-cache", "--temperature", "0"],
        env,
        timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    records = read_records(output)
    assert len(records) == 2
    for record in records:
        assert 1 <= len(record["drafts"]) <= 2, record
        for draft in record["drafts"]:
            text = draft["text"]
            assert text is not None and text.strip(), record
            assert not any(marker in text for marker in TEMPLATE_TEXT), text


def test_a_ctrl_c_stops_the_run_and_the_model(marked_env: tuple[dict, str], tmp_path: Path) -> None:
    env, marker = marked_env
    output = tmp_path / "out.jsonl"
    run = subprocess.Popen(
        [REFINE, "run", str(EXAMPLES / "summarize.jsonl"), "--task", "summarize", "-o",
         str(output), "--no-cache", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for_slots(marker)
        time.sleep(2)  # requests are in flight now
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr
    assert _wait_until_gone(marker) == {}


def test_a_killed_run_takes_its_model_server_along(
    marked_env: tuple[dict, str], tmp_path: Path
) -> None:
    env, marker = marked_env
    run = subprocess.Popen(
        [REFINE, "run", str(EXAMPLES / "summarize.jsonl"), "--task", "summarize", "-o",
         str(tmp_path / "out.jsonl"), "--no-cache", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_slots(marker)
        os.kill(run.pid, signal.SIGKILL)  # no finally blocks, no signal handlers: only the kernel
        run.wait(timeout=10)
    finally:
        run.kill()
    assert _wait_until_gone(marker) == {}


def _wait_for_slots(marker: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any("flows.local.backend" in cmd for cmd in _processes_with(marker).values()):
        if time.monotonic() > deadline:
            raise AssertionError("the local model's slot processes never started")
        time.sleep(0.2)


def test_serve_model_answers_openai_clients_and_stops_on_sigterm(
    marked_env: tuple[dict, str],
) -> None:
    env, marker = marked_env
    server = subprocess.Popen(
        [REFINE, "serve-model", "--port", "0", "--parallel", "2", "--ctx-size", "1024"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "with 2 slot(s) at http://127.0.0.1:" in line, server.stderr.read()
        base_url = line.split(" at ", 1)[1].split()[0]
        slots = [c for c in _processes_with(marker).values() if "flows.local.backend" in c]
        assert len(slots) == 2
        client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
        answer = client.chat.completions.create(
            model=DEFAULT_ALIAS,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            temperature=0,
        )
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        assert answer.choices[0].finish_reason in ("stop", "length")
        models = json.loads(client.models.list().model_dump_json())["data"]
        assert [m["id"] for m in models] == [DEFAULT_ALIAS]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        server.kill()
    assert _wait_until_gone(marker) == {}


def test_a_model_that_cannot_load_fails_the_run_with_the_servers_words(
    marked_env: tuple[dict, str], tmp_path: Path
) -> None:
    env, marker = marked_env
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # the magic bytes, then nothing llama.cpp can load
    config = tmp_path / "refine.toml"
    config.write_text(f'[local_model]\nmodel_path = "{broken}"\nparallel = 1\n')
    dataset = _first_rows(EXAMPLES / "qa.jsonl", 1, tmp_path / "qa1.jsonl")
    output = tmp_path / "out.jsonl"
    result = run_refine(
        ["run", str(dataset), "--task", "qa", "--config", str(config), "-o", str(output)], env
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "the local model server exited with status" in message
    assert "exited with status 1 while loading" in message  # the slot's own report, passed up
    assert not output.exists() or output.read_text() == ""
    assert _wait_until_gone(marker) == {}


def test_a_model_that_answers_too_late_is_a_clear_timeout(
    marked_env: tuple[dict, str], tmp_path: Path
) -> None:
    env, marker = marked_env
    config = tmp_path / "refine.toml"
    config.write_text("[local_model]\nstartup_timeout_s = 0.05\nparallel = 1\n")
    result = run_refine(["serve-model", "--port", "0", "--config", str(config)], env)
    assert result.returncode == 2, result.stderr
    assert "the local model did not answer within 0.05 s" in " ".join(result.stderr.split())
    assert _wait_until_gone(marker) == {}


def test_a_codegen_fix_step_sees_the_failing_visible_test_with_its_value(
    marked_env: tuple[dict, str], tmp_path: Path
) -> None:
    """Issue 14: the model is told which visible test failed, with the failing line's source and
    the value the code returned. A test no correct ``add`` can pass makes sure a fix step runs."""
    env, _ = marked_env
    dataset = tmp_path / "code.jsonl"
    row = {"id": "add", "prompt": "Write a Python function add(a, b) that returns a + b.",
           "tests": "assert add(2, 2) == 5"}  # fmt: skip
    dataset.write_text(json.dumps(row) + "\n")
    output = tmp_path / "out.jsonl"
    result = run_refine(
        ["run", str(dataset), "--task", "codegen", "--steps", "2", "-o", str(output),
         "--no-cache", "--temperature", "0"],
        env,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # the test cannot pass: the item fails
    (record,) = read_records(output)
    first, fix = record["drafts"][0], record["drafts"][1]
    assert "def add" in first["text"] and "```" not in first["text"]
    quoted = [p for p in first["problems"] if "`assert add(2, 2) == 5`" in p]
    assert quoted and "returned 4" in quoted[0], first["problems"]
    assert fix["kind"] == "fix" and record["status"] == "failed"
