"""Load: 10,000 items x 3 steps with 10% of requests failing transiently (503). Every item ends
ok within its call budget, and the run's memory stays flat (RSS sampled from /proc).

Marked ``load``: CI runs it as a stage of its own (``python -m pytest -m load``)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_helpers import REFINE
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer
from tests.reliability.fake_process import FakeServerProcess
from tests.reliability.invariants import (
    Budget,
    no_secret_anywhere,
    processes_mentioning,
    records_by_id,
    refine_env,
    write_config,
    write_items,
)

pytestmark = pytest.mark.load

# 8 attempts: a call then fails only after 8 failures in a row, (0.1)^8 x 30,000 calls = 0.0003
ITEMS, STEPS, MAX_ATTEMPTS = 10_000, 3, 8


def _rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return int(line.split()[1]) if line else None


def test_ten_thousand_items_with_transient_failures_end_ok_in_flat_memory(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    ids = [f"item-{i:04d}" for i in range(ITEMS)]
    data = write_items(tmp_path / "data.jsonl", ITEMS)
    out = tmp_path / "out.jsonl"
    config = write_config(
        tmp_path / "c.toml", steps=STEPS, max_attempts=MAX_ATTEMPTS, backoff_initial_s=0.01,
        backoff_max_s=0.05, max_elapsed_s=60,
    )  # fmt: skip
    samples: list[tuple[int, int]] = []  # (records written, RSS KiB)
    with FakeServerProcess("--max-log", "0") as server:  # a 33k-entry log is not needed
        control = FakeOpenAIControl(server.base_url)
        control.fail_rate(503, 0.10, seed=3)
        command = [REFINE, "run", str(data), "-o", str(out), "--config", str(config),
                   "--base-url", server.base_url, "--model", "m", "--concurrency", "32",
                   "--quiet"]  # fmt: skip
        started = time.monotonic()
        env = refine_env(prefect_server, tmp_path)
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
        while run.poll() is None:
            rss = _rss_kib(run.pid)
            written = out.read_bytes().count(b"\n") if out.exists() else 0
            if rss is not None:
                samples.append((written, rss))
            time.sleep(0.5)
        stdout, stderr = run.communicate()
        wall = time.monotonic() - started
        requests = control.stats()["requests"]
    assert run.returncode == 0, stderr[-3000:]

    records = records_by_id(out, ids)
    assert all(r["status"] == "ok" and len(r["drafts"]) == STEPS for r in records.values())
    budget = Budget(steps=STEPS, max_attempts=MAX_ATTEMPTS)
    attempts = [sum(d["attempts"] for d in r["drafts"]) for r in records.values()]
    assert max(attempts) <= budget.per_item
    assert sum(attempts) == requests  # every request the server saw is accounted for
    assert requests > ITEMS * STEPS * 1.05  # the failures did happen, and were retried
    first = max(rss for written, rss in samples if written < ITEMS // 4)
    last = max(rss for written, rss in samples if written >= ITEMS * 3 // 4)
    print(
        f"\nload: {ITEMS} items x {STEPS} steps in {wall:.0f} s, {requests} requests "
        f"({requests / ITEMS:.2f} per item, at most {max(attempts)}), "
        f"RSS peak {first / 1024:.0f} MiB in the first quarter, {last / 1024:.0f} MiB in the last"
    )
    assert last <= 1.2 * first, (first, last)
    assert processes_mentioning(str(tmp_path)) == []
    no_secret_anywhere(None, out, texts=[stdout, stderr])
