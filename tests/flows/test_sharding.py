"""Scale-out: a Prefect server on PostgreSQL, two workers, and a sharded run of one dataset."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.config.run import build_run_config
from flows.data.input_config import InputConfig
from flows.ops.lifecycle import drain_prefect_workers
from flows.sharding import merge_parts, shard_config, split_dataset
from tests.cli_helpers import REFINE, fake_server_process, read_records
from tests.deploy_helpers import prefect_env, worker
from tests.postgres import PostgresCluster, postgres_bin
from tests.prefect_server import PrefectServer


def write_rows(path: Path, rows: int) -> Path:
    lines = (
        json.dumps({"text": f"Entry {i}: the tide turns at {i} o'clock."}) for i in range(rows)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_split_keeps_ids_and_skips_done_and_merge_writes_each_id_once(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "d.jsonl", 7)  # no ids: items are named by line number
    paths = split_dataset(data, tmp_path / "s", 3, done={"2"})
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    assert sorted(int(row["id"]) for row in rows) == [1, 3, 4, 5, 6, 7]
    assert [len(path.read_text().splitlines()) for path in paths] == [2, 2, 2]

    part = tmp_path / "part.jsonl"
    record = {"id": "1", "status": "ok", "output": "x", "drafts": []}
    part.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n{torn")
    out = tmp_path / "out.jsonl"
    assert merge_parts(out, [part, part, tmp_path / "missing.jsonl"]) == 1
    assert merge_parts(out, [part]) == 0
    assert [r["id"] for r in read_records(out)] == ["1"]


def test_split_takes_the_chosen_rows_under_their_template_names(tmp_path: Path) -> None:
    """A run with --map and --limit: the shards hold the chosen rows, mapped, and the shards
    run without the mapping (their rows have no column of the dataset's own name left)."""
    data = tmp_path / "news.jsonl"
    rows = [{"guid": f"g{i}", "article": f"Article {i}."} for i in range(6)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    chosen = InputConfig(map={"text": "article", "id": "guid"}, limit=4)
    paths = split_dataset(data, tmp_path / "s", 2, done={"g1"}, chosen=chosen)
    shard_rows = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    assert sorted(shard_rows, key=lambda row: row["id"]) == [
        {"id": "g0", "text": "Article 0."},
        {"id": "g2", "text": "Article 2."},
        {"id": "g3", "text": "Article 3."},
    ]
    config = build_run_config({"concurrency": 9, "input": chosen.model_dump()})
    shard = shard_config(config, 2)
    assert shard.input == InputConfig() and shard.concurrency == 5


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(bin_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
async def test_sharded_run_on_two_workers_writes_every_item_once(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.config.run import EndpointConfig, RunConfig
    from flows.sharding import refine_sharded

    server = PrefectServer(
        tmp_path / "prefect-home", {"PREFECT_API_DATABASE_CONNECTION_URL": postgres.url}
    )
    server.start()
    try:
        env = prefect_env(server, PREFECT_LOGGING_LEVEL="INFO")  # workers log what they take
        data = write_rows(tmp_path / "tides.jsonl", 40)
        deploy = [REFINE, "deploy", str(data), "--task", "summarize", "--pool", "shards"]
        deploy += ["--model", "fake-model", "--base-url", "http://127.0.0.1:9/v1"]
        done = subprocess.run(deploy, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

        out = tmp_path / "merged.jsonl"
        logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
        with (
            fake_server_process("--latency-ms", "100") as base_url,
            worker("shards", env, logs[0], "worker-a", "--limit", "1"),
            worker("shards", env, logs[1], "worker-b", "--limit", "1"),
            temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        ):
            config = RunConfig(
                task="summarize",
                steps=2,
                chunk_size=5,
                cache_dir=tmp_path / "cache",
                endpoint=EndpointConfig(base_url=base_url, model="fake-model"),
            )
            summary = await refine_sharded(data, out, config, shards=4)
            async with get_client() as client:
                shard_runs = [await client.read_flow_run(run_id) for run_id in summary.shard_runs]
    finally:
        # the parent's logs, before their server goes (off the loop: it drains synchronously)
        await asyncio.to_thread(drain_prefect_workers)
        server.stop()

    records = read_records(out)
    assert sorted(int(r["id"]) for r in records) == list(range(1, 41))  # every item, once
    assert all(r["status"] == "ok" and len(r["drafts"]) == 2 for r in records)
    assert all(run.state_type.value == "COMPLETED" for run in shard_runs)
    assert all(run.parent_task_run_id is not None for run in shard_runs)  # sub-flow runs
    taken = [{str(run.id) for run in shard_runs if str(run.id) in log.read_text()} for log in logs]
    assert all(taken), f"a worker took no shard: {taken}"
    assert set.union(*taken) == {str(run.id) for run in shard_runs}
