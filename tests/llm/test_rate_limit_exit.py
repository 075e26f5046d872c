"""A paced run stops promptly: Ctrl-C or SIGTERM while many requests wait for a Prefect rate
limit ends the process within seconds, not after Prefect's acquisition service has granted
every acquisition queued in it (it drains its queue at exit, one 423 retry after another).

Run as a module, this file is the process: ``python -m tests.llm.test_rate_limit_exit
BASE_URL NAME`` drives many calls at a time against a tight limit and prints ``waiting`` once
they wait; SIGINT or SIGTERM then unwinds it as ``refine run`` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer

WORKERS = 30  # calls waiting at once; the limit lets about one a second through
ROOT = Path(__file__).resolve().parents[2]


async def _drive(base_url: str, name: str) -> None:
    from pydantic import SecretStr

    from flows.config.run import EndpointConfig, RetryConfig
    from flows.llm.client import ChatClient
    from tests.llm.test_rate_limit import drive

    endpoint = EndpointConfig(
        base_url=base_url, model="m", max_tokens=10, rpm=60, tpm=3000, rate_limit_name=name
    )
    client = ChatClient(endpoint, RetryConfig(), SecretStr("sk-test-secret"), max_in_flight=WORKERS)
    try:
        driving = asyncio.ensure_future(drive(client, 600.0, WORKERS, "exit"))
        await asyncio.sleep(3.0)  # the bucket's burst is spent; the rest wait in line
        print("waiting", flush=True)
        await driving
    finally:
        await client.aclose()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_paced_run_exits_within_seconds_of_a_stop_signal(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, signum: int
) -> None:
    env = {**os.environ, **prefect_server.client_env(), "PYTHONPATH": str(ROOT)}
    name = f"exit-{fake_server.port}-{signum}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.llm.test_rate_limit_exit", fake_server.base_url, name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        proc.send_signal(signum)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"exited {took:.1f} s after the signal")
    assert proc.returncode == 128 + signum, err[-3000:]
    # with every waiting take queued in Prefect: 57-61 s, and "ConcurrencySlotAcquisitionService
    # - Still processing items: 29 items remaining..."; now one take per bucket is left there
    assert "ConcurrencySlotAcquisitionService - Still processing" not in err
    assert took < 8.0, err[-3000:]


if __name__ == "__main__":
    from flows.ops.lifecycle import drain_prefect_workers
    from flows.ops.signals import interrupt_exit_code, stop_signal_of, stop_signals_interrupt

    def _interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C raised where it lands, as in a flow run (asyncio.run's own handler, which only
    # cancels the main task, is not installed when SIGINT already has a handler)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with stop_signals_interrupt():
            asyncio.run(_drive(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt as exc:
        drain_prefect_workers()  # as refine run does: the events sent while the API listens
        sys.exit(interrupt_exit_code(stop_signal_of(exc) or signal.SIGINT))
