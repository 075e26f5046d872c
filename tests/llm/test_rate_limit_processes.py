"""The acceptance test of ``[endpoint] rpm`` and ``tpm``: two processes, one fake server, one
Prefect server; what the server received in any 60 seconds stays within the limits.

Each process drives two ChatClients for a bit over a minute, one limited by rpm and one by
tpm, two calls at a time each: unlimited, they would send 80 requests a second per model.

Run as a module, this file is the process: ``python -m tests.llm.test_rate_limit_processes
BASE_URL SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer

RPM, TPM = 30, 3000
SECONDS = 65.0  # past one minute, so a window of 60 s is a real one, not the whole run
WORKERS = 2  # calls at a time per client and process: 40 a second each, unlimited
ROOT = Path(__file__).resolve().parents[2]


async def _drive(base_url: str, seconds: float) -> dict[str, int]:
    from pydantic import SecretStr

    from flows.config.run import EndpointConfig, RetryConfig
    from flows.llm.client import ChatClient
    from tests.llm.test_rate_limit import drive

    tag = f"pid{os.getpid()}"
    clients = [
        ChatClient(
            EndpointConfig(base_url=base_url, model=model, max_tokens=10, **limit),
            RetryConfig(),
            SecretStr("sk-test-secret"),
            max_in_flight=4,
        )
        for model, limit in (("rpm-model", {"rpm": RPM}), ("tpm-model", {"tpm": TPM}))
    ]
    try:
        runs = (drive(c, seconds, WORKERS, tag, cut_off=False) for c in clients)
        answered = await asyncio.gather(*runs)
    finally:
        for client in clients:
            await client.aclose()
    return dict(zip(("rpm-model", "tpm-model"), answered, strict=True))


@pytest.mark.slow
def test_two_processes_share_the_limits_through_prefect(
    fake_server: FakeOpenAI, prefect_server: PrefectServer
) -> None:
    from tests.llm.test_rate_limit import sent, worst_window

    fake_server.set_latency(0.05)
    env = {**os.environ, **prefect_server.client_env(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.llm.test_rate_limit_processes"]
    procs = [
        subprocess.Popen(
            [*command, fake_server.base_url, str(SECONDS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [proc.communicate(timeout=SECONDS + 60) for proc in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    answered = [json.loads(out.splitlines()[-1]) for out, _ in outs]

    requests, tokens = sent(fake_server, "rpm-model"), sent(fake_server, "tpm-model", True)
    worst_requests, worst_tokens = worst_window(requests, 60), worst_window(tokens, 60)
    one_request = max(amount for _, amount in tokens)
    print(f"worst 60 s: {worst_requests} requests (rpm {RPM}), {worst_tokens} tokens (tpm {TPM})")
    assert worst_requests <= RPM + 1
    assert worst_tokens <= TPM + one_request
    # both processes took part, and the pace was the limit's, not a stall
    assert all(a["rpm-model"] > 0 and a["tpm-model"] > 0 for a in answered)
    assert worst_requests >= RPM / 2 and worst_tokens >= TPM / 2
    # no 429 and no error; a call cut off at the end of the drive has no status
    assert {e.status for e in fake_server.chat_requests()} <= {200, None}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_drive(sys.argv[1], float(sys.argv[2])))))
