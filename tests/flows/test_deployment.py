"""The deployment of prefect.yaml on a real server and a process worker, seen through the API
and the UI; ``refine serve`` and ``refine deploy``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.ui.run_stats import read_run_stats
from tests.cli_helpers import REFINE, fake_server_process, read_records
from tests.deploy_helpers import (
    REPO,
    chromium,
    prefect_cli,
    prefect_env,
    read_task_runs,
    wait_for_flow_run,
    worker,
)
from tests.fake_openai import FakeOpenAIControl
from tests.prefect_server import PrefectServer

pytestmark = pytest.mark.slow

CANARY = "sk-canary-worker-3c1d"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A server of its own with the UI on (the session's has it off)."""
    server = PrefectServer(
        Path(tmp_path_factory.mktemp("prefect-ui-home")), {"PREFECT_SERVER_UI_ENABLED": "true"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def on_ui_server(ui_server: PrefectServer) -> AsyncIterator[PrefectServer]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url}):
        yield ui_server


def write_dataset(path: Path, rows: int) -> Path:
    lines = [
        json.dumps({"id": f"n{i}", "text": f"Note {i}: the ferry leaves at {i} pm."})
        for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_config(base_url: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    endpoint = {"base_url": base_url, "model": "fake-model", "api_key_secret": "refine-test-key"}
    return {
        "task": "summarize",
        "steps": 2,
        "chunk_size": 2,
        "cache_dir": str(tmp_path / "cache"),
        "endpoint": endpoint,
        **extra,
    }


async def test_prefect_yaml_deployment_runs_on_a_worker_and_shows_in_the_ui(
    on_ui_server: PrefectServer, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret
    from prefect.deployments import run_deployment

    env = prefect_env(on_ui_server)
    await Secret(value=CANARY).save("refine-test-key", overwrite=True)  # type: ignore[misc]
    prefect_cli(["work-pool", "create", "refine", "--type", "process"], env)
    prefect_cli(["deploy", "--name", "refine-batch-nightly"], env)  # from prefect.yaml

    data = write_dataset(tmp_path / "notes.jsonl", 5)
    out = tmp_path / "out.jsonl"
    with (
        fake_server_process() as base_url,
        worker("refine", env, tmp_path / "worker.log", "worker-a"),
    ):
        flow_run = await run_deployment(
            "refine-batch/refine-batch-nightly",
            parameters={
                "input_path": str(data),
                "output_path": str(out),
                "config": run_config(base_url, tmp_path),
            },
            timeout=0,
        )
        flow_run = await wait_for_flow_run(flow_run.id)
        seen = FakeOpenAIControl(base_url).chat_requests()
    assert flow_run.state_type.value == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
    assert flow_run.name == "summarize · notes.jsonl"
    assert {"task:summarize", "model:fake-model"} <= set(flow_run.tags)

    # the key came from the Secret block, and is nowhere in what the server keeps of the run
    assert {entry.headers["authorization"] for entry in seen} == {f"Bearer {CANARY}"}
    assert CANARY not in json.dumps(flow_run.model_dump(mode="json"), default=str)
    assert len(read_records(out)) == 5 and all(r["status"] == "ok" for r in read_records(out))

    # the DAG: per chunk, step-2 takes step-1's result and starts after it ended
    runs = await read_task_runs(flow_run.id, expected=6)
    by_name = {run.name: run for run in runs}
    assert set(by_name) == {f"step-{s} [chunk {c}]" for s in (1, 2) for c in (0, 1, 2)}
    for chunk in (0, 1, 2):
        first, second = by_name[f"step-1 [chunk {chunk}]"], by_name[f"step-2 [chunk {chunk}]"]
        upstream = {i.id for inputs in second.task_inputs.values() for i in inputs}
        assert first.id in upstream
        assert {by_name[f"step-1 [chunk {c}]"].id for c in (0, 1, 2) if c != chunk}.isdisjoint(
            upstream
        )
        assert second.start_time >= first.end_time
    assert all(run.state_type.value == "COMPLETED" for run in runs)

    # the artifacts carry the figures of the output file
    from tests.ui.test_dashboard import flow_run_artifacts

    artifacts = await flow_run_artifacts(flow_run.id)
    assert artifacts["progress"].data == 100.0
    assert json.loads(artifacts["table"].data) == read_run_stats(out).rows()
    assert [row["items"] for row in json.loads(artifacts["table"].data)] == [5, 5]
    assert artifacts["markdown"].data.count("### item `n") == 3  # three sample items

    # the UI renders the run's page
    page = f"http://127.0.0.1:{on_ui_server.port}/runs/flow-run/{flow_run.id}"
    screenshot = tmp_path / "flow-run.png"
    dom = chromium(page, tmp_path, screenshot)
    assert "summarize · notes.jsonl" in dom
    assert screenshot.stat().st_size > 10_000
    if target := os.environ.get("REFINE_DOCS_SCREENSHOT"):  # to refresh the README's picture
        shutil.copy(screenshot, REPO / target)


async def test_eval_deployment_runs_on_a_worker_and_its_plots_render_in_the_ui(
    on_ui_server: PrefectServer, tmp_path: Path
) -> None:
    from prefect.deployments import run_deployment

    from tests.ui.test_dashboard import flow_run_artifacts

    env = prefect_env(on_ui_server)
    prefect_cli(["work-pool", "create", "refine-eval", "--type", "process"], env)
    prefect_cli(["deploy", "--name", "refine-eval-nightly", "--pool", "refine-eval"], env)
    out = tmp_path / "out.jsonl"
    with fake_server_process() as base_url:  # a real run's output to evaluate
        done = subprocess.run(
            [REFINE, "run", str(write_dataset(tmp_path / "notes.jsonl", 4)), "-o", str(out),
             "--task", "summarize", "--steps", "2", "--base-url", base_url, "--model", "m",
             "--quiet"],
            env={**env, "REFINE_CACHE_DIR": str(tmp_path / "cache")},
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with worker("refine-eval", env, tmp_path / "worker.log", "worker-eval"):
        flow_run = await run_deployment(
            "refine-eval/refine-eval-nightly",
            parameters={"output": str(out), "out_dir": str(tmp_path / "eval")},
            timeout=0,
        )
        flow_run = await wait_for_flow_run(flow_run.id)
    assert flow_run.state_type.value == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
    assert flow_run.name == "eval · out.jsonl"
    assert (tmp_path / "eval" / "cost_quality.png").is_file()

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        images = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    image = next(a for a in images if a.key == "refine-eval-out-reward-per-step")
    assert json.loads((await flow_run_artifacts(flow_run.id))["table"].data)[0]["row"] == "step 1"
    page = f"http://127.0.0.1:{on_ui_server.port}/artifacts/artifact/{image.id}"
    screenshot = tmp_path / "artifact.png"
    dom = chromium(page, tmp_path, screenshot)
    assert '<img src="data:image/png;base64,' in dom.replace("'", '"')
    assert screenshot.stat().st_size > 20_000
    if target := os.environ.get("REFINE_DOCS_ARTIFACT_SCREENSHOT"):
        shutil.copy(screenshot, REPO / target)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [REFINE, *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def test_refine_serve_schedules_and_runs_without_the_key_in_parameters(
    on_ui_server: PrefectServer, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.client.schemas.objects import Deployment

    data = write_dataset(tmp_path / "serve.jsonl", 3)
    out = tmp_path / "served.jsonl"
    env = prefect_env(on_ui_server, OPENAI_API_KEY=CANARY, REFINE_CACHE_DIR=str(tmp_path / "c"))
    with fake_server_process() as base_url:
        args = ["serve", str(data), "-o", str(out), "--task", "summarize", "--steps", "2"]
        args += ["--model", "fake-model", "--base-url", base_url, "--name", "served"]
        proc = _start([*args, "--cron", "0 2 * * *"], env, tmp_path / "serve.log")
        try:
            deployment: Deployment | None = None
            async with get_client() as client:
                for _ in range(120):
                    try:
                        deployment = await client.read_deployment_by_name("refine-batch/served")
                        break
                    except Exception:  # noqa: BLE001 - not there yet
                        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                        time.sleep(0.5)
                assert deployment is not None
                assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]  # type: ignore[union-attr]
                assert CANARY not in json.dumps(deployment.parameters)
                assert deployment.parameters["input_path"] == str(data.resolve())
                run = await client.create_flow_run_from_deployment(deployment.id)
            flow_run = await wait_for_flow_run(run.id)
            seen = FakeOpenAIControl(base_url).chat_requests()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert flow_run.state_type.value == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
    assert len(read_records(out)) == 3
    assert {entry.headers["authorization"] for entry in seen} == {f"Bearer {CANARY}"}


def test_refine_deploy_creates_a_pool_and_a_secret_free_deployment(
    ui_server: PrefectServer, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 2)
    env = prefect_env(ui_server, OPENAI_API_KEY=CANARY)
    args = ["deploy", str(data), "--task", "summarize", "--model", "m", "--base-url", "http://x/v1"]
    done = subprocess.run(
        [REFINE, *args, "--pool", "fresh-pool", "--name", "nightly", "--cron", "0 2 * * *"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "created work pool 'fresh-pool'" in done.stdout
    shown = prefect_cli(["deployment", "inspect", "refine-batch/nightly"], env)
    assert "flows.batch.refine_batch" in shown and "0 2 * * *" in shown
    assert "fresh-pool" in shown and CANARY not in shown
    assert "'mode': 'batch'" not in shown

    batch = [*args, "--pool", "fresh-pool", "--name", "nightly-batch", "--batch-api"]
    done = subprocess.run([REFINE, *batch], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = prefect_cli(["deployment", "inspect", "refine-batch/nightly-batch"], env)
    assert "'mode': 'batch'" in shown  # the runs it starts go through the Batch API

    bad = subprocess.run([REFINE, *args, "--steps", "0"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "steps" in bad.stderr  # checked before anything is created
