"""``refine run`` with no Prefect server configured: the temporary server it starts.

Real parts throughout: ``refine run`` as a subprocess in Prefect's ephemeral mode (no
PREFECT_API_URL, a PREFECT_HOME of the module's own), the fake OpenAI server in its own
process, and Prefect's SQLite database read after the run.

- Whatever signal ends the run (SIGKILL, SIGTERM), no process it started outlives it and the
  ports they listened on are free.
- SIGTERM stops it like Ctrl-C: one line, exit code 143, finished items kept, a rerun resumes.
- A successful run ends with its summary, no error after it, and every task run it ran is
  recorded in Prefect's database in a final state.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import REFINE
from tests.reliability.fake_process import FakeServerProcess
from tests.reliability.invariants import records_by_id, write_config, write_items

pytestmark = pytest.mark.slow

_GONE_WITHIN_S = 15.0
_TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PREFECT_HOME for the module: its first run creates the database (the slow start)."""
    return tmp_path_factory.mktemp("prefect-home")


def _env(prefect_home: Path, tmp_path: Path, level: str = "WARNING") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_LOGGING_LEVEL=level,
        REFINE_CACHE_DIR=str(tmp_path / "cache"),
        OPENAI_API_KEY="sk-test",
    )
    return env


def _command(data: Path, out: Path, config: Path, base_url: str, *more: str) -> list[str]:
    return [REFINE, "run", str(data), "-o", str(out), "--config", str(config),
            "--base-url", base_url, "--model", "m", *more]  # fmt: skip


# -- the processes a run started, from /proc ----------------------------------------------


def _parents() -> dict[int, int]:
    """Every live process's parent, from /proc/PID/stat."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _listening_ports(pids: set[int]) -> set[int]:
    """TCP ports the processes ``pids`` listen on (their socket inodes in /proc/net/tcp)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in (Path("/proc") / str(pid) / "fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _port_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (as servers do: SO_REUSEADDR, so the
    TIME_WAIT of connections closed by the kill does not count)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_records(run: subprocess.Popen[str], out: Path, stderr: Path) -> None:
    """Until the run has written its first record."""
    deadline = time.monotonic() + 240
    while not (out.exists() and out.read_bytes().count(b"\n") >= 1):
        if run.poll() is not None:
            raise AssertionError(f"the run ended before it was stopped: {stderr.read_text()}")
        assert time.monotonic() < deadline, "no record written in time"
        time.sleep(0.05)


def _survivors(pids: set[int]) -> set[int]:
    deadline = time.monotonic() + _GONE_WITHIN_S
    while (alive := {pid for pid in pids if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


class _StoppedRun:
    """A run started, stopped by a signal once a record is written, and what it left."""

    def __init__(
        self, command: list[str], env: dict[str, str], out: Path, signum: int, logs: Path
    ) -> None:
        # files, not pipes: a process that outlives the run would hold a pipe open
        with (logs / "stdout").open("w") as stdout, (logs / "stderr").open("w") as stderr:
            self.run = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr,
                                        text=True, start_new_session=True)  # fmt: skip
        self.children: set[int] = set()
        try:
            _wait_for_records(self.run, out, logs / "stderr")
            self.children = _descendants(self.run.pid)
            self.ports = _listening_ports(self.children)
            self.run.send_signal(signum)
            self.run.wait(timeout=120)
            self.survivors = _survivors(self.children)
        finally:
            self.clean_up()
        self.stderr = (logs / "stderr").read_text()

    def clean_up(self) -> None:
        """Whatever the outcome, leave nothing running behind the test."""
        for pid in {self.run.pid, *self.children}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.run.poll() is None:
            self.run.wait()


@pytest.fixture
def slow_server() -> Iterator[FakeServerProcess]:
    with FakeServerProcess("--latency-ms", "300") as server:
        yield server


def test_kill_9_leaves_no_process_and_no_port_behind(
    prefect_home: Path, tmp_path: Path, slow_server: FakeServerProcess
) -> None:
    data = write_items(tmp_path / "data.jsonl", 12)
    out, config = tmp_path / "out.jsonl", write_config(tmp_path / "c.toml", steps=2)
    command = _command(data, out, config, slow_server.base_url, "--concurrency", "2")
    stopped = _StoppedRun(command, _env(prefect_home, tmp_path), out, signal.SIGKILL, tmp_path)

    assert stopped.children, "the run started no temporary Prefect server"
    assert stopped.ports, "the temporary Prefect server listened on no port"
    assert stopped.survivors == set(), "processes of the run outlived its kill -9"
    assert all(_port_free(port) for port in stopped.ports)


def test_sigterm_stops_like_ctrl_c_and_a_rerun_resumes(
    prefect_home: Path, tmp_path: Path, slow_server: FakeServerProcess
) -> None:
    ids = [f"item-{i:04d}" for i in range(12)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out, config = tmp_path / "out.jsonl", write_config(tmp_path / "c.toml", steps=2)
    command = _command(data, out, config, slow_server.base_url, "--concurrency", "2")
    env = _env(prefect_home, tmp_path)
    stopped = _StoppedRun(command, env, out, signal.SIGTERM, tmp_path)

    assert stopped.run.returncode == 143, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines() == [
        "stopped by SIGTERM: finished items are in the output; run again to resume"
    ], stopped.stderr[-3000:]
    assert stopped.children and stopped.survivors == set()
    assert all(_port_free(port) for port in stopped.ports)
    finished = out.read_text(encoding="utf-8").count("\n")
    assert 1 <= finished < len(ids)

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(rf"\(resumed\)\s*│\s*{finished}\s", rerun.stdout), rerun.stdout
    records = records_by_id(out, ids)  # every id once, none twice
    assert all(r["status"] == "ok" for r in records.values())


def _recorded_task_runs(prefect_home: Path) -> dict[str, str]:
    """Task-run name to state type, for the latest flow run in Prefect's database."""
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        (flow_run,) = db.execute("SELECT id FROM flow_run ORDER BY created DESC LIMIT 1").fetchone()
        rows = db.execute(
            "SELECT name, state_type FROM task_run WHERE flow_run_id = ?", (flow_run,)
        ).fetchall()
    return dict(rows)


def test_a_finished_run_ends_quietly_with_every_task_run_recorded(
    prefect_home: Path, tmp_path: Path
) -> None:
    data = write_items(tmp_path / "data.jsonl", 150)
    out, config = tmp_path / "out.jsonl", write_config(tmp_path / "c.toml", steps=3)
    with FakeServerProcess("--latency-ms", "0") as server:
        # chunks of 2: 225 task runs, a load under which Prefect's own temporary server lost
        # task runs at its stop (and printed an "Error flushing" traceback for each)
        command = _command(data, out, config, server.base_url, "--chunk-size", "2")
        result = subprocess.run(
            command, env=_env(prefect_home, tmp_path, level="INFO"),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    logs = result.stdout + result.stderr
    assert "Traceback" not in logs and "| ERROR" not in logs, logs[-5000:]
    # the task runs this run reported finishing, in its own log
    ran = set(re.findall(r"Task run '([^']+)' - Finished in state", result.stderr))
    assert len(ran) == 225, sorted(ran)[:10]

    recorded = _recorded_task_runs(prefect_home)
    missing = ran - set(recorded)
    assert not missing, f"{len(missing)} task runs not recorded, e.g. {sorted(missing)[:5]}"
    unfinished = {name: state for name, state in recorded.items() if state not in _TERMINAL}
    assert not unfinished, f"{len(unfinished)} task runs left unfinished: {unfinished}"
