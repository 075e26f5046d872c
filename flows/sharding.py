"""Scale-out: one dataset split into shards, each a sub-flow run of the ``refine_batch``
deployment, so workers on several machines share it; the parts merge into one output.

The shard inputs and output parts live next to the output (``OUT.shards/``), which every
worker must reach at the same path (a shared disk). Each shard is an ordinary batch run: it
resumes, and writes its records to its own part. The parent then appends every part's records
to the output, skipping ids it already holds, so each item appears exactly once however often
the parent or a shard was rerun.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

from flows.config.run import RunConfig
from flows.data.input_config import InputConfig
from flows.data.output import OutputLog
from flows.data.output_reader import RecordReader
from flows.data.reading import iter_items, open_source
from flows.deployments import batch_parameters
from flows.ui.labels import run_name

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = [
    "ShardedSummary",
    "done_ids",
    "merge_parts",
    "refine_sharded",
    "shard_config",
    "split_dataset",
]


class ShardedSummary(BaseModel):
    """What a sharded run did: its shard runs and the merged output."""

    output_path: Path
    shards: int
    shard_runs: list[str]
    merged: int
    records: int


def split_dataset(
    input_path: Path, folder: Path, shards: int, done: set[str], chosen: InputConfig | None = None
) -> list[Path]:
    """Write the items not in ``done`` round-robin into ``shards`` JSONL files (ids kept, so a
    row named by its line number keeps that name); return the files, empty ones included.

    ``chosen`` (the run's ``[input]``) picks and maps the rows; the shards hold them under their
    template variables, so a shard runs with :func:`shard_config`. Rows that cannot be items
    (bad lines, duplicate ids) are left out: the run's pre-flight check reported them.
    """
    chosen = chosen or InputConfig()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"input-{i + 1}-of-{shards}.jsonl" for i in range(shards)]
    handles = [path.open("w", encoding="utf-8") for path in paths]
    try:
        items = iter_items(open_source(input_path, chosen), chosen)
        pending = (item for item in items if item.id not in done)
        for index, item in enumerate(pending):
            row: dict[str, Any] = {"id": item.id, **item.fields}
            if item.reference is not None:
                row["reference"] = item.reference
            handles[index % shards].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return paths


def shard_config(config: RunConfig, shards: int) -> RunConfig:
    """A shard's settings: an equal share of the concurrency, and no row choice or column
    mapping (its input holds the chosen rows under their template variables already)."""
    share = math.ceil(config.concurrency / shards)
    return config.model_copy(update={"concurrency": share, "input": InputConfig()})


def merge_parts(output_path: Path, parts: list[Path], *, retry_failed: bool = False) -> int:
    """Append the parts' records to the output, each id once; return how many were added.

    Each part is read by the rules of :mod:`flows.data.output_reader` (its torn tail left out, the
    latest record of an id kept); a part that is missing (its shard never started) adds nothing.
    With ``retry_failed``, an id whose latest record in the output is failed takes one new record
    (appended: it supersedes the failed one), as a ``--retry-failed`` run of one process does.

    Raises:
        InputError: the output or a part holds a line that is not a record (file and line named).
    """
    added = 0
    with OutputLog(output_path, retry_failed=retry_failed) as out:
        for part in parts:
            if not part.exists():
                continue
            for _, record in RecordReader(part):
                added += out.append(record)
    return added


def done_ids(output_path: Path, *, retry_failed: bool = False) -> set[str]:
    """The ids not to run again (none when the output does not exist yet): those the output
    holds, less the failed ones with ``retry_failed``; read by the resume scan of
    :class:`~flows.data.output.OutputLog`, which also cuts a torn tail off."""
    if not output_path.exists():
        return set()
    with OutputLog(output_path, retry_failed=retry_failed) as out:
        return out.finished


def _sharded_run_name() -> str:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    parameters = dict(context.parameters or {}) if context else {}
    config = parameters.get("config")
    config = config if isinstance(config, RunConfig) else RunConfig.model_validate(config or {})
    name = run_name(parameters.get("input_path") or "dataset", config)
    return f"{name} [{parameters.get('shards', '?')} shards]"


@flow(name="refine-sharded", flow_run_name=_sharded_run_name, log_prints=False)
async def refine_sharded(
    input_path: Path,
    output_path: Path,
    config: RunConfig | None = None,
    shards: int = 2,
    deployment: str = "refine-batch/refine-batch",
) -> ShardedSummary:
    """Refine a dataset as ``shards`` runs of a ``refine_batch`` deployment, then merge.

    Args:
        input_path: the dataset; the shard files are written next to the output.
        output_path: the merged output (resumed: finished ids are not sent again).
        config: the run's settings, passed to every shard (no secret in them).
        shards: how many shard runs; each goes to whichever worker of the pool takes it.
        deployment: ``flow-name/deployment-name`` of a ``refine_batch`` deployment.
    """
    from prefect.deployments import run_deployment

    config = config or RunConfig()
    logger = get_run_logger()
    folder = output_path.with_name(output_path.name + ".shards")
    retry = config.retry_failed
    done = done_ids(output_path, retry_failed=retry)
    inputs = split_dataset(input_path, folder, shards, done, config.input)
    parts = [folder / path.name.replace("input-", "output-") for path in inputs]
    unmapped = config.model_copy(update={"input": InputConfig()})  # the shards hold mapped rows
    calls: list[Awaitable[FlowRun]] = [
        run_deployment(  # type: ignore[misc]  # async caller: awaitable; a sub-flow run of this one
            deployment,
            parameters=batch_parameters(shard_in, part, unmapped),
            timeout=None,  # wait for it
        )
        for shard_in, part in zip(inputs, parts, strict=True)
    ]
    runs = await asyncio.gather(*calls)
    failed = [run.name for run in runs if not (run.state and run.state.is_completed())]
    merged = await asyncio.to_thread(merge_parts, output_path, parts, retry_failed=retry)
    records = len(done_ids(output_path))
    logger.info("merged %d records from %d shards into %s", merged, shards, output_path)
    if failed:
        raise RuntimeError(f"shard runs did not complete: {', '.join(failed)}; rerun to resume")
    return ShardedSummary(
        output_path=output_path,
        shards=shards,
        shard_runs=[str(run.id) for run in runs],
        merged=merged,
        records=records,
    )
