"""How a batch run shows in the Prefect UI: name, tags, artifacts, failure logs, no secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.batch import refine_batch
from flows.config.run import EndpointConfig, RetryConfig, RunConfig
from flows.ui.run_stats import read_run_stats
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")


def make_config(server: FakeOpenAI, tmp_path: Path, **changes: Any) -> RunConfig:
    return RunConfig(
        task="summarize",
        steps=2,
        chunk_size=2,
        cache_dir=tmp_path / "cache",
        endpoint=EndpointConfig(base_url=server.base_url, model="fake-model"),
        retry=RetryConfig(max_attempts=1),
        **changes,
    )


async def flow_run_artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The run's artifacts by type (the latest of each), read through the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {artifact.type: artifact for artifact in artifacts}


async def test_run_name_tags_artifacts_and_failure_ids(
    fake_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    canary = "sk-canary-dashboard-51"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    rows = [{"id": f"r{i}", "text": f"Report number {i} about the river."} for i in range(5)]
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    fake_server.script([Reply(status=400, content="bad request")], match="number 3 ")
    out = tmp_path / "out.jsonl"

    state = await refine_batch(data, out, make_config(fake_server, tmp_path), return_state=True)
    flow_run_id = state.state_details.flow_run_id

    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        task_runs: list[Any] = []
        messages: list[str] = []
        for _ in range(100):  # task runs (from events) and logs are sent a moment later
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            messages = [log.message for log in logs]
            done = all(run.state_type.value == "COMPLETED" for run in task_runs)
            if len(task_runs) == 6 and done and any("ids: r3" in m for m in messages):
                break
            await asyncio.sleep(0.2)
    assert flow_run.name == "summarize · reviews.jsonl"
    assert {"task:summarize", "model:fake-model"} <= set(flow_run.tags)
    assert len(task_runs) == 6  # 3 chunks x 2 steps
    assert all({"task:summarize", "model:fake-model"} <= set(r.tags) for r in task_runs)

    assert any("r3" in message and "failed" in message for message in messages)
    dumped = json.dumps([flow_run.model_dump(mode="json"), messages], default=str)
    assert canary not in dumped and '"api_key"' not in json.dumps(flow_run.parameters)

    artifacts = await flow_run_artifacts(flow_run_id)
    assert {"progress", "table", "markdown"} <= set(artifacts)
    assert artifacts["progress"].data == 100.0
    assert "5 of 5 items done (1 failed)" in artifacts["progress"].description
    table = json.loads(artifacts["table"].data)
    assert table == read_run_stats(out).rows()
    by_step = {row["step"]: row for row in table}
    assert by_step["step-1"]["items"] == 4 and by_step["step-1"]["failures"] == 1
    assert by_step["step-2"]["items"] == 4
    assert by_step["step-1"]["tokens"] > 0 and by_step["step-1"]["mean reward"] is None
    assert artifacts["table"].key == "refine-steps-summarize-reviews"
    markdown = artifacts["markdown"].data
    assert "### item `r0`" in markdown and "**step-2**" in markdown

    # resumed: the progress starts from the records the run's own resume scan found
    again = await refine_batch(data, out, make_config(fake_server, tmp_path), return_state=True)
    progress = (await flow_run_artifacts(again.state_details.flow_run_id))["progress"]
    assert progress.data == 100.0 and progress.key == "refine-progress-summarize-reviews"
    assert progress.description.startswith("5 of 5 items done (0 failed) · 0 requests")
