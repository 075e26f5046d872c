"""Scale-out on a Dask cluster: the dataset split into shards, each refined on a Dask worker.

``refine run --task-runner dask`` runs :func:`refine_on_dask` with prefect-dask's
``DaskTaskRunner``: a local cluster of one worker process per shard by default, or the cluster
at ``--dask-address``. Each shard is a Prefect task on a worker that runs an ordinary
``refine_batch`` flow on its part of the data (a nested flow run, with its own client, cache
and output part), so every shard resumes and shows its steps in the UI like any batch. The
parent merges the parts into the output, each id once, as :mod:`flows.sharding` does for
deployments. The run's ``concurrency`` is shared out between the shards, so the endpoint sees
no more requests in flight than configured.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from flows.config.run import RunConfig
from flows.data.output import OutputLog
from flows.sharding import done_ids, merge_parts, shard_config, split_dataset
from flows.ui.labels import batch_run_name
from refine.errors import ConfigError

__all__ = ["DaskSummary", "dask_task_runner", "refine_on_dask", "refine_shard", "run_on_dask"]


class DaskSummary(BaseModel):
    """What a Dask-sharded run did."""

    output_path: Path
    shards: int
    merged: int
    records: int
    ok: int
    failed: int
    worker_pids: list[int]


@task(task_run_name="shard {index} of {shards}", cache_policy=NO_CACHE)
def refine_shard(
    input_part: Path, output_part: Path, config: RunConfig, index: int, shards: int
) -> dict[str, Any]:
    """Refine one shard on a Dask worker: an ordinary batch flow run on its part of the data."""
    from flows.batch import refine_batch

    summary = asyncio.run(refine_batch(input_part, output_part, config))
    return {"ok": summary.ok, "failed": summary.failed, "pid": os.getpid()}


def dask_task_runner(shards: int, address: str | None) -> Any:
    """prefect-dask's runner: the cluster at ``address``, or one local worker per shard."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "--task-runner dask needs prefect-dask: pip install 'prefect-refine[dask]'"
        ) from None
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": shards, "threads_per_worker": 1, "processes": True}
    )


@flow(name="refine-dask", flow_run_name=batch_run_name, log_prints=False)
def refine_on_dask(
    input_path: Path, output_path: Path, config: RunConfig, shards: int = 2
) -> DaskSummary:
    """Refine a dataset as ``shards`` tasks on the flow's Dask task runner, then merge.

    Args:
        input_path: the dataset; the shard files are written next to the output.
        output_path: the merged output (resumed: finished ids are not sent again).
        config: the run's settings; each shard gets an equal share of its concurrency.
        shards: how many shards (and, on a local cluster, worker processes).
    """
    logger = get_run_logger()
    folder = output_path.with_name(output_path.name + ".shards")
    retry = config.retry_failed
    done = done_ids(output_path, retry_failed=retry)
    inputs = split_dataset(input_path, folder, shards, done, config.input)
    parts = [folder / path.name.replace("input-", "output-") for path in inputs]
    share = shard_config(config, shards)
    futures = [
        refine_shard.submit(shard_in, part, share, index + 1, shards)
        for index, (shard_in, part) in enumerate(zip(inputs, parts, strict=True))
        if shard_in.stat().st_size > 0  # a resumed run may leave a shard with nothing to do
    ]
    results = [future.result() for future in futures]
    merged = merge_parts(output_path, parts, retry_failed=retry)
    with OutputLog(output_path) as out:
        finished, failed = len(out.finished), len(out.failed)
    logger.info("merged %d records from %d Dask shards into %s", merged, shards, output_path)
    return DaskSummary(
        output_path=output_path,
        shards=shards,
        merged=merged,
        records=finished,
        ok=finished - failed,
        failed=failed,
        worker_pids=sorted({int(r["pid"]) for r in results}),
    )


def run_on_dask(
    input_path: Path, output_path: Path, config: RunConfig, shards: int, address: str | None
) -> DaskSummary:
    """``refine run --task-runner dask``: needs a Prefect server every worker can reach."""
    from prefect.settings import get_current_settings

    if shards < 1:
        raise ConfigError(f"--shards must be at least 1, got {shards}")
    if not get_current_settings().api.url:
        raise ConfigError(
            "--task-runner dask needs a Prefect server that every Dask worker reaches: start "
            "one with `refine server` and set PREFECT_API_URL (each worker would otherwise "
            "start a temporary server of its own, and the run would be scattered across them)"
        )
    runner = dask_task_runner(shards, address)
    return refine_on_dask.with_options(task_runner=runner)(input_path, output_path, config, shards)
