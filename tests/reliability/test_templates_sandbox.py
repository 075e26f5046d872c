"""Hostile templates and hostile model output, through ``refine run``: templates cannot reach
Python's internals or render without bound, model output is never a template, and generated
code runs in the sandbox with no network, no key and no way out to the host."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    SECRET,
    Budget,
    no_secret_anywhere,
    records_by_id,
    refine,
    refine_env,
    within_budget,
    write_config,
    write_items,
)

HOSTILE_TEMPLATES = {
    "python internals": ("{{ ''.__class__.__mro__ }}", "sandbox"),
    "gigabytes through nested loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}"
        "{{ 'x' * 1000 }}{% endfor %}{% endfor %}",
        "more than 100000 characters",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_TEMPLATES))
def test_a_hostile_user_template_is_stopped_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, case: str
) -> None:
    source, words = HOSTILE_TEMPLATES[case]
    folder = tmp_path / "templates" / "summarize"
    folder.mkdir(parents=True)
    (folder / "initial.j2").write_text('{% include "summarize/input.j2" %}\n' + source)
    data = write_items(tmp_path / "data.jsonl", 3)
    args = ["run", str(data), "-o", str(tmp_path / "out.jsonl"), "--base-url",
            fake_server.base_url, "--model", "m", "--template-dir", str(folder.parent),
            "--config", str(write_config(tmp_path / "c.toml"))]  # fmt: skip
    started = time.monotonic()
    result = refine(args, refine_env(prefect_server, tmp_path))
    assert result.returncode == 2 and time.monotonic() - started < 30
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "initial.j2" in result.stderr and words in result.stderr
    assert fake_server.chat_requests() == []


def test_model_output_with_template_syntax_is_never_rendered(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    answer = "Pump fixed {{ 7 * 7 }} {% for x in range(10**9) %}{{ x }}{% endfor %} {{ config }}"
    fake_server.script([Reply(content=answer)], match="item-0000")
    data = write_items(tmp_path / "data.jsonl", 1)
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "-o", str(out), "--base-url", fake_server.base_url, "--model", "m",
            "--config", str(write_config(tmp_path / "c.toml"))]  # fmt: skip
    result = refine(args, refine_env(prefect_server, tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    records = records_by_id(out, ["item-0000"])
    assert records["item-0000"]["drafts"][0]["text"] == answer
    step_2 = json.dumps(fake_server.chat_requests()[1].messages)
    assert "{{ 7 * 7 }}" in step_2 and "{% for x in range(10**9) %}" in step_2
    assert "49" not in step_2


HOSTILE_CODE = """```python
import os, socket

def solve():
    print("ENV", dict(os.environ))
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(
            b"GET /v1/models HTTP/1.0\\r\\n\\r\\n"
        )
        print("NET connected")
    except OSError as exc:
        print("NET refused:", exc)
    try:
        with open({outside!r}, "w") as fh:
            fh.write("escaped")
        print("WROTE outside")
    except OSError as exc:
        print("WRITE refused:", exc)
    return 1
```"""


def test_generated_code_runs_contained_through_refine_run(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    outside = tmp_path / "host-file-written-by-the-model"
    fake_server.script(
        [Reply(content=HOSTILE_CODE.format(port=fake_server.port, outside=str(outside)))]
    )
    data = tmp_path / "data.jsonl"
    row = {
        "id": "item-0000",
        "prompt": "Write solve() for item-0000.",
        "tests": "assert solve() == 2",
    }
    data.write_text(json.dumps(row) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["run", str(data), "-o", str(out), "--task", "codegen", "--steps", "1",
            "--base-url", fake_server.base_url, "--model", "m",
            "--config", str(write_config(tmp_path / "c.toml"))]  # fmt: skip
    result = refine(args, refine_env(prefect_server, tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]  # the test fails: no usable draft
    records = records_by_id(out, ["item-0000"])
    problems = "\n".join(records["item-0000"]["drafts"][0]["problems"])
    assert "0 of 1 tests pass" in problems and "ENV {" in problems  # the code did run
    assert "NET refused" in problems and "WRITE refused" in problems
    assert not outside.exists()
    assert [e.path for e in fake_server.requests] == ["/v1/chat/completions"]
    within_budget(records, fake_server.chat_requests(), Budget(steps=1, max_attempts=3))
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[result.stdout])
    assert SECRET not in problems
