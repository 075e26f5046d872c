"""Shards on a real local Dask cluster (worker processes) against the fake server."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from flows.dask_shards import dask_task_runner, refine_on_dask
from tests.batch_helpers import make_config
from tests.cli_helpers import cli_env, fake_server_process, read_records, run_refine
from tests.fake_openai import FakeOpenAI, FakeOpenAIControl, Reply
from tests.prefect_server import PrefectServer

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("prefect_api")
def test_every_item_once_from_two_dask_workers(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"id": "{i}", "text": "text {i}"}}\n' for i in range(12)))
    out = tmp_path / "out.jsonl"
    config = make_config(fake_server, tmp_path, steps=2, concurrency=4)
    runner = dask_task_runner(shards=2, address=None)
    summary = refine_on_dask.with_options(task_runner=runner)(data, out, config, shards=2)

    records = read_records(out)
    assert sorted(r["id"] for r in records) == sorted(str(i) for i in range(12))
    assert all(r["status"] == "ok" and len(r["drafts"]) == 2 for r in records)
    assert summary.merged == summary.records == 12
    assert len(summary.worker_pids) == 2 and os.getpid() not in summary.worker_pids
    assert len(fake_server.chat_requests()) == 24
    parts = sorted((tmp_path / "out.jsonl.shards").glob("output-*.jsonl"))
    assert [len(read_records(p)) for p in parts] == [6, 6]

    again = refine_on_dask.with_options(task_runner=dask_task_runner(2, None))(
        data, out, config, shards=2
    )
    assert again.merged == 0 and len(read_records(out)) == 12  # resumed: nothing twice
    assert len(fake_server.chat_requests()) == 24


@pytest.mark.usefixtures("prefect_api")
def test_retry_failed_on_dask_appends_one_new_record_per_failed_id(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"id": "{i}", "text": "text {i}"}}\n' for i in range(6)))
    out = tmp_path / "out.jsonl"
    config = make_config(fake_server, tmp_path, steps=1, concurrency=4)
    fake_server.script([Reply(status=400, content="context overflow")], match="text 4")
    first = refine_on_dask.with_options(task_runner=dask_task_runner(2, None))(
        data, out, config, shards=2
    )
    assert first.failed == 1 and len(fake_server.chat_requests()) == 6
    before = out.read_bytes()

    retry = config.model_copy(update={"retry_failed": True})
    again = refine_on_dask.with_options(task_runner=dask_task_runner(2, None))(
        data, out, retry, shards=2
    )
    assert out.read_bytes().startswith(before)  # appended, never rewritten
    added = read_records(out)[len(before.splitlines()) :]
    assert [(r["id"], r["status"]) for r in added] == [("4", "ok")]
    assert again.merged == 1 and again.failed == 0 and again.records == 6
    assert len(fake_server.chat_requests()) == 7  # only the failed id went out again


def test_refine_run_with_the_dask_task_runner(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """With the dataset's own column names, a sample and the summary's figures as JSON."""
    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"key": "{i}", "task": "task {i}"}}\n' for i in range(12)))
    out = tmp_path / "out.jsonl"
    figures_path = tmp_path / "summary.json"
    with fake_server_process() as url:
        result = run_refine(
            ["run", str(data), "-o", str(out), "--base-url", url, "--model", "m", "--steps", "2",
             "--task-runner", "dask", "--shards", "2", "--map", "id=key", "--map", "input=task",
             "--sample", "8", "--sample-seed", "3", "--summary-json", str(figures_path)],
            cli_env(prefect_server, tmp_path),
        )  # fmt: skip
        sent = len(FakeOpenAIControl(url).chat_requests())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 / 2" in result.stdout  # shards / worker processes
    chosen = sorted(str(i) for i in random.Random(3).sample(range(12), 8))
    assert sorted(r["id"] for r in read_records(out)) == chosen
    assert sent == 16
    figures = json.loads(figures_path.read_text())
    assert figures["selection"] == "8 rows sampled at random (--sample 8 --sample-seed 3)"
    assert (figures["ok"], figures["failed"], figures["exit_code"]) == (8, 0, 0)
    assert "input rows taken" in result.stdout


def test_dask_needs_a_prefect_server_every_worker_reaches(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "1", "input": "x"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENAI_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    with fake_server_process() as url:
        result = run_refine(
            ["run", str(data), "--base-url", url, "--model", "m", "--task-runner", "dask"], env
        )
    assert result.returncode == 2
    assert "needs a Prefect server that every Dask worker reaches" in result.stderr
