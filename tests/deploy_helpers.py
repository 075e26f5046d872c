"""Helpers for tests with deployments: workers, waiting on flow runs, reading the DAG, Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from tests.prefect_server import PrefectServer

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def prefect_env(server: PrefectServer, **extra: str) -> dict[str, str]:
    """A clean environment for ``prefect`` commands and workers: this server, no API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REFINE_"))}
    env.update(server.client_env())
    env.update({"PWD": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"})
    env.update(extra)
    return env


def prefect_cli(args: list[str], env: dict[str, str]) -> str:
    """Run ``prefect ARGS`` from the repository root; raise with its output if it fails."""
    done = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)}: {done.stdout}\n{done.stderr}")
    return done.stdout


@contextmanager
def worker(pool: str, env: dict[str, str], log: Path, name: str, *args: str) -> Iterator[None]:
    """``prefect worker start --pool POOL`` in its own process group, stopped afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                PREFECT,
                "worker",
                "start",
                "--pool",
                pool,
                "--name",
                name,
                "--type",
                "process",
                *args,
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_for_flow_run(flow_run_id: UUID, timeout: float = 180) -> Any:
    """Poll the API until the flow run is in a terminal state; return it."""
    from prefect import get_client

    async with get_client() as client:
        for _ in range(int(timeout / 0.5)):
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state_type is not None and flow_run.state_type.value in TERMINAL:
                return flow_run
            await asyncio.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} did not finish in {timeout} s: {flow_run.state}")


async def read_task_runs(flow_run_id: UUID, expected: int, timeout: float = 60) -> list[Any]:
    """The flow run's task runs, once ``expected`` of them are recorded in a final state (the
    server records them from events, a moment after the flow run ends)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    async with get_client() as client:
        for _ in range(int(timeout / 0.5)):
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            final = all(r.state_type is not None and r.state_type.value in TERMINAL for r in runs)
            if len(runs) >= expected and final:
                return runs
            await asyncio.sleep(0.5)
    return runs


CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # nothing fetched at start: the machines are offline
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
"""Headless Chromium's flags in the tests (here and Playwright's launch in tests/view)."""


def chromium(url: str, out_dir: Path, screenshot: Path | None = None) -> str:
    """Load ``url`` in headless Chromium; save a screenshot if asked; return the rendered DOM."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=out_dir))
    common = [
        binary,
        "--headless",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--virtual-time-budget=15000",
    ]
    if screenshot is not None:
        subprocess.run(
            [*common, f"--screenshot={screenshot}", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
    done = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout
