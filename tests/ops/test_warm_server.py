"""``refine run`` with no Prefect server configured keeps its temporary server warm for the next
runs (flows/ops/warm_server.py), and every run is recorded by that server.

Real parts: ``refine run`` and ``refine server stop`` as subprocesses in Prefect's ephemeral
mode (no PREFECT_API_URL, a PREFECT_HOME of the test's own), the fake OpenAI server in its own
process, and the kept server's REST API read after the runs. Whatever happens, the kept server
is killed at the test's end: no test leaves a process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import REFINE, fake_server_process

pytestmark = pytest.mark.slow


def _env(home: Path, tmp_path: Path, idle_s: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOGGING_LEVEL="WARNING",
        REFINE_CACHE_DIR=str(tmp_path / "cache"),
        REFINE_SERVER_IDLE_TIMEOUT=idle_s,
    )
    return env


def _state(home: Path) -> dict[str, object] | None:
    path = home / "refine-server.json"
    return json.loads(path.read_text()) if path.exists() else None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A PREFECT_HOME whose kept server, if any, is killed at the end."""
    home = tmp_path / "prefect-home"
    seen: set[int] = set()
    yield home
    state = _state(home)
    if state is not None:
        seen.add(int(str(state["pid"])))
    for pid in seen:
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def _run(url: str, data: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REFINE, "run", str(data), "-o", str(out), "--base-url", url, "--model", "m",
         "--steps", "1", "--no-cache", "--quiet"],
        env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _flow_run_names(api_url: str) -> list[str]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as answer:
        return [run["name"] for run in json.loads(answer.read())]


def _write(path: Path, item: str) -> Path:
    path.write_text(json.dumps({"id": item, "input": "The pump was repaired."}) + "\n")
    return path


def _run_item(
    url: str, item: str, env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``refine run`` of one item ``item``, which succeeds."""
    data = _write(tmp_path / f"{item}.jsonl", item)
    result = _run(url, data, tmp_path / f"{item}-out.jsonl", env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_second_run_reuses_the_kept_server_and_both_are_recorded(
    home: Path, tmp_path: Path
) -> None:
    env = _env(home, tmp_path, idle_s="120")
    with fake_server_process("--latency-ms", "0") as url:
        first = _run_item(url, "a", env, tmp_path)
        state = _state(home)
        assert state is not None, first.stderr[-3000:]
        api_url, pid = str(state["api_url"]), int(str(state["pid"]))
        assert f"keeps running at {api_url}" in first.stderr
        assert "refine server stop" in first.stderr and "120 s unused" in first.stderr
        assert _alive(pid)  # the run has ended; its server has not

        second = _run_item(url, "b", env, tmp_path)
        assert _state(home) == state  # the same server, not a second one
        assert "keeps running" not in second.stderr  # said once, by the run that started it

    deadline = time.monotonic() + 60  # the server records a run's events just after it ends
    while len(_flow_run_names(api_url)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_flow_run_names(api_url)) == 2

    stop = subprocess.run([REFINE, "server", "stop"], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert stop.returncode == 0, stop.stderr[-3000:]
    assert stop.stdout.strip() == f"stopped the Prefect server at {api_url}"
    assert not _alive(pid) and _state(home) is None
    again = subprocess.run([REFINE, "server", "stop"], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.stdout.strip() == "no server to stop"


def test_the_kept_server_stops_itself_once_unused_for_its_idle_timeout(
    home: Path, tmp_path: Path
) -> None:
    with fake_server_process("--latency-ms", "0") as url:
        result = _run_item(url, "a", _env(home, tmp_path, idle_s="2"), tmp_path)
    assert "2 s unused" in result.stderr
    log = (home / "refine-server.log").read_text()
    state = _state(home)
    pid = int(str(state["pid"])) if state else None
    deadline = time.monotonic() + 90
    while (_state(home) is not None or (pid and _alive(pid))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _state(home) is None, log
    assert pid is None or not _alive(pid)
    assert "Traceback" not in (home / "refine-server.log").read_text()
