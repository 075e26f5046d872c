"""Running ``refine`` as a real subprocess, and an out-of-process fake server, for CLI tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.prefect_server import PrefectServer

REFINE = str(Path(sys.executable).with_name("refine"))


def cli_env(prefect: PrefectServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment: the session's Prefect server, a private cache, no real API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REFINE_"))}
    env.update(prefect.client_env())
    env["REFINE_CACHE_DIR"] = str(tmp_path / "cache")
    env.update(extra)
    return env


def run_refine(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REFINE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@contextmanager
def fake_server_process(*args: str) -> Iterator[str]:
    """``python -m tests.fake_openai`` in its own process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("FAKE_OPENAI_BASE_URL="):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield line.split("=", 1)[1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def kill_when_written(
    command: list[str], env: dict[str, str], output: Path, records: int, timeout: float = 120
) -> float:
    """Start ``command``, SIGKILL its whole process group once ``output`` holds ``records``
    lines, and return the ``time.monotonic()`` of the kill (the fake server logs on that clock).

    Raises RuntimeError if the run ends, or the records don't come, before the kill.
    """
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not (output.exists() and output.read_bytes().count(b"\n") >= records):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the run ended (or stalled) before it could be killed")
            time.sleep(0.02)
        killed_at = time.monotonic()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return killed_at
