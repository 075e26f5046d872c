"""Building configs and datasets for flow tests against the fake server, and reading records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from flows.config.run import EndpointConfig, RetryConfig, RunConfig
from tests.fake_openai import FakeOpenAI


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_config(server: FakeOpenAI, tmp_path: Path, **changes: Any) -> RunConfig:
    """A summarize run of 3 steps on ``server`` with fast retries and a private cache."""
    endpoint = {"base_url": server.base_url, "model": "fake-model", **changes.pop("endpoint", {})}
    base: dict[str, Any] = {
        "task": "summarize",
        "steps": 3,
        "cache_dir": tmp_path / "cache",
        "endpoint": EndpointConfig(**endpoint),
        "retry": RetryConfig(max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05),
    }
    base.update(changes)
    return RunConfig(**base)


def user_prompts(server: FakeOpenAI) -> list[str]:
    """The last (user) message of every chat request, in order."""
    return [entry.body["messages"][-1]["content"] for entry in server.chat_requests()]


async def task_runs_of(state: Any, expected: int) -> list[Any]:
    """The task runs of ``state``'s flow run, once the Prefect server has recorded ``expected``
    of them, all completed (it records them from events, a moment after they run)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = state.state_details.flow_run_id
    runs: list[Any] = []
    async with get_client() as client:
        for _ in range(100):
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(runs) >= expected and all(r.state_type.value == "COMPLETED" for r in runs):
                break
            await asyncio.sleep(0.2)
    return runs
