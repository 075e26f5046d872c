"""The Prefect flows: ``refine_batch`` over a dataset and ``refine_one`` for a single item.

One Prefect task is one refinement step over a chunk of items (a task per HTTP call would cost
more than the calls: see DESIGN.md); items whose latest draft has problems take that step in an
error-correction task of their own (``fix-t``) beside the plain one (``step-t``). Per chunk the
DAG reads step 1 -> (fix 2 | step 2) -> ...; chunks move independently, and every request of
the run shares one limit on requests in flight.
Finished items go to the output file as soon as their chunk's step returns.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from flows.config.run import RunConfig
from flows.data.output import OutputLog
from flows.data.records import Item, Trajectory
from flows.llm.batch_client import BatchingClient
from flows.loop.assemble import open_refiner
from flows.loop.preflight import check_items, load_input
from flows.loop.refiner import ItemRun, Refiner
from flows.step_major import refine_step_major
from flows.ui.artifacts import ProgressFeed, run_dashboard
from flows.ui.labels import batch_run_name
from flows.ui.summary import BatchSummary, Tally
from refine.errors import ConfigError, FatalEndpointError, RefineError, first_error

__all__ = ["BatchSummary", "fix_step", "plan_chunks", "refine_batch", "refine_one", "refine_step"]


class Chunk:
    """Items refined together. A plain class on purpose: Prefect links a task to the chunks it
    receives by identity, and does not walk into plain objects the way it walks pydantic models.

    ``runs`` holds all the chunk's items and is shared by every Chunk of that chunk; ``todo``
    are the ones the task receiving this Chunk works on.
    """

    def __init__(
        self,
        index: int,
        runs: list[ItemRun],
        fatal: RefineError | None = None,
        todo: list[ItemRun] | None = None,
    ) -> None:
        self.index = index
        self.runs = runs
        self.fatal = fatal
        self.todo = todo if todo is not None else []

    @property
    def active(self) -> list[ItemRun]:
        return [run for run in self.runs if not run.done]


async def _run_steps(refiner: Refiner, work: Chunk, step: int) -> Chunk:
    """Run ``step`` for ``work.todo`` concurrently; a fatal error is carried on the result."""
    fatal: RefineError | None = None
    try:
        async with asyncio.TaskGroup() as group:  # a fatal error cancels the siblings
            for run in work.todo:
                group.create_task(refiner.step(run, step))
    except* (FatalEndpointError, ConfigError) as stopped:
        fatal = first_error(stopped)
    return Chunk(work.index, work.runs, fatal=fatal)


@task(
    name="refine-step",
    task_run_name="step-{step} [chunk {chunk_index}]",
    cache_policy=NO_CACHE,
    retries=0,
)
async def refine_step(
    refiner: Refiner, work: Chunk, upstream: list[Chunk], step: int, chunk_index: int
) -> Chunk:
    """Run step ``step`` (``initial`` or ``refine`` template) for the chunk's items whose latest
    draft has no problems, concurrently.

    Args:
        refiner: the run's shared client, cache, templates, cleaners and checks.
        work: the items this task advances (``work.todo``).
        upstream: the previous step's results for this chunk, which link the DAG.
        step: 1-based step number.
        chunk_index: shown in the task run's name.

    Returns:
        A new Chunk over the same item runs, so the next step links to this task in the DAG.
        What no item can get past (a 401/403/404, a broken configuration) is carried on it as
        ``fatal``, so the flow stops with one clear message, not a traceback per task.
    """
    return await _run_steps(refiner, work, step)


@task(
    name="fix-step",
    task_run_name="fix-{step} [chunk {chunk_index}]",
    cache_policy=NO_CACHE,
    retries=0,
)
async def fix_step(
    refiner: Refiner, work: Chunk, upstream: list[Chunk], step: int, chunk_index: int
) -> Chunk:
    """The error-correction task: run step ``step`` with the ``fix`` template for the chunk's
    items whose latest draft has problems (they are in the prompt), concurrently.

    Args and return value as for :func:`refine_step`.
    """
    return await _run_steps(refiner, work, step)


async def _refine_chunk(
    refiner: Refiner, index: int, items: list[Item], on_done: Callable[[Trajectory], None]
) -> RefineError | None:
    """Take one chunk through its steps, handing each item to ``on_done`` as soon as it is done.

    Each step is up to two Prefect tasks run concurrently: ``step-t`` for items whose latest
    draft is fine and ``fix-t`` for items whose latest draft has problems; both follow all of
    step t-1's tasks of the chunk. Returns the error that stops the whole run, if one happened;
    the chunk's unfinished items are then not handed over, so a rerun picks them up.
    """
    runs = [refiner.start(item) for item in items]
    upstream: list[Chunk] = []
    for step in range(1, refiner.config.steps + 1):
        active = [run for run in runs if not run.done]
        if not active:
            break
        fixes = [run for run in active if run.needs_fix]
        steps = [run for run in active if not run.needs_fix]
        calls = [
            task(refiner, Chunk(index, runs, todo=todo), upstream, step, index)
            for task, todo in ((refine_step, steps), (fix_step, fixes))
            if todo
        ]
        upstream = list(await asyncio.gather(*calls))
        if fatal := next((chunk.fatal for chunk in upstream if chunk.fatal), None):
            return fatal
        for run in active:
            if run.done:
                on_done(refiner.finish(run))
    # Prefect keeps every task's result until the flow ends; the Chunks of all steps share
    # this list, so emptying it lets the finished drafts go instead of piling up in memory.
    runs.clear()
    return None


MAX_TASK_RUNS = 5_000  # the UI's graph refuses >10,000 nodes, and each task run costs the server


def plan_chunks(config: RunConfig, items: int) -> tuple[int, int]:
    """Chunk size and chunks in flight for ``items`` items.

    By default a chunk holds as many items as there are request slots (10 to 100): big enough
    that Prefect's cost per task run (milliseconds) is spread over many requests, small enough
    that items reach the output early. The size grows past the configured one when the run
    would otherwise exceed MAX_TASK_RUNS task runs. Only enough chunks run at once to keep
    every request slot busy (twice the concurrency in items, plus one chunk), so records
    stream to the output from the start instead of all at the end.
    """
    wanted = config.chunk_size or min(100, max(10, config.concurrency))
    # a step is up to two tasks per chunk: step-t and fix-t
    size = max(wanted, math.ceil(items * config.steps * 2 / MAX_TASK_RUNS))
    in_flight = config.chunks_in_flight or math.ceil(2 * config.concurrency / size) + 1
    return size, in_flight


async def _run_chunks(
    refiner: Refiner, pending: Iterable[Item], total: int, on_done: Callable[[Trajectory], None]
) -> RefineError | None:
    """Refine the ``total`` items of ``pending`` in chunks, enough of them at once to keep every
    request slot busy; the error that stops the run, if one happened (no chunk starts after it).

    ``pending`` is read a chunk at a time, as a chunk can start: a dataset read from disk
    (:class:`flows.data.reading.ItemStream`) holds only the chunks in flight in memory.
    """
    config = refiner.config
    size, in_flight = plan_chunks(config, total)
    if config.chunk_size and size != config.chunk_size:
        get_run_logger().warning(
            "chunk size raised to %d: at most %d task runs", size, MAX_TASK_RUNS
        )
    slots = asyncio.Semaphore(in_flight)
    stopped: list[RefineError] = []

    async def run_chunk(index: int, items: list[Item]) -> None:
        try:
            if stopped:  # the run is stopping: start no more task runs
                return
            if fatal := await _refine_chunk(refiner, index, items, on_done):
                stopped.append(fatal)
        finally:
            slots.release()

    items = iter(pending)
    async with asyncio.TaskGroup() as group:
        for index in itertools.count():
            await slots.acquire()  # the next chunk is read only when it can start
            chunk = list(itertools.islice(items, size))
            if not chunk or stopped:
                slots.release()
                break
            group.create_task(run_chunk(index, chunk))
    return stopped[0] if stopped else None


@flow(name="refine-batch", flow_run_name=batch_run_name, log_prints=False)
async def refine_batch(
    input_path: Path, output_path: Path, config: RunConfig | None = None
) -> BatchSummary:
    """Refine every item of a dataset in T steps and append one record per item to the output.

    Args:
        input_path: JSONL or CSV dataset; each row has an ``id`` or is named by its line number.
        output_path: JSONL output; an existing file is resumed (finished ids are skipped).
        config: the run's settings (no secrets: the API key is read from the environment or
            the config file named in it).

    Returns:
        The counts of the run. Bad input or configuration, or an endpoint refusing every call,
        ends the run Failed with that one message (and raises it to a direct caller) rather
        than with a traceback.
    """
    try:
        config = config or RunConfig()
        async with run_dashboard(input_path, output_path, config) as progress:  # UI
            return await _run_batch(input_path, output_path, config, progress)
    except RefineError as exc:
        get_run_logger().error("run stopped: %s", exc)
        return Failed(message=str(exc), data=exc)  # type: ignore[return-value]


async def _run_batch(
    input_path: Path, output_path: Path, config: RunConfig, progress: ProgressFeed
) -> BatchSummary:
    started = time.perf_counter()
    logger = get_run_logger()
    checked = load_input(input_path, config)  # the one check of the dataset
    items, ids = checked.items, checked.ids
    if checked.selection:
        logger.info("input: %s of %s", checked.selection, input_path)
    # the one scan of the output: resume and progress
    with OutputLog(output_path, retry_failed=config.retry_failed) as out:
        # done: ids not taken up again (a retried id counts when its new record lands)
        progress.start(items=len(ids), done=len(out.finished), offset=out.complete_bytes)
        pending = (item for item in items if item.id not in out.finished)
        to_run = sum(item_id not in out.finished for item_id in ids)
        skipped = len(ids) - to_run
        retried = sum(item_id in out.retrying for item_id in ids if item_id not in out.finished)
        failed_before = sum(item_id in out.failed - out.retrying for item_id in ids)
        if skipped:
            logger.info("resuming %s: %d of %d done before", output_path, skipped, len(ids))
        if retried:
            logger.info("retrying %d failed item(s) of %s", retried, output_path)
        async with open_refiner(config, checked.exemplars, output_path, count=len(ids)) as refiner:
            tally = Tally()

            def finished(record: Trajectory) -> None:
                out.append(record)
                tally.add(record)
                if record.status == "failed":
                    logger.warning("item %s failed: %s", record.id, record.error)

            if config.mode == "batch":  # step-major, through the endpoint's Batch API
                fatal = await refine_step_major(refiner, pending, finished)
            else:
                fatal = await _run_chunks(refiner, pending, to_run, finished)
            if fatal is not None:
                raise fatal
            cache = refiner.calls.cache
            if cache is not None and cache.write_errors:
                logger.warning("%d answers could not be cached", cache.write_errors)
            client = refiner.calls.client
            http_attempts = client.http_attempts
            batches = (
                {
                    "batches_submitted": client.runner.batches_submitted,
                    "batches_reattached": client.runner.batches_reattached,
                    "batch_requests": client.runner.requests_submitted,
                    "answered_online": client.answered_online,
                }
                if isinstance(client, BatchingClient)
                else {}
            )
            cache_hits = refiner.calls.cache_hits
    summary = BatchSummary(
        output_path=output_path,
        rows_read=checked.rows_read,
        invalid=len(checked.skipped_lines),
        items=len(ids),
        skipped=skipped,
        ran=to_run,
        retried=retried,
        failed_before=failed_before,
        ok=tally.ok,
        failed=tally.failed,
        http_attempts=http_attempts,
        cache_hits=cache_hits,
        prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens,
        tokens_estimated=tally.tokens_estimated,
        wall_s=round(time.perf_counter() - started, 3),
        stop_reasons=dict(tally.stop_reasons.most_common()),
        mode=config.mode,
        batch_tokens=tally.batch_tokens,
        selection=checked.selection,
        **batches,
    )
    logger.info("done: %d ok, %d failed, %d skipped", summary.ok, summary.failed, skipped)
    return summary


@flow(name="refine-one", log_prints=False)
async def refine_one(fields: dict[str, Any], config: RunConfig | None = None) -> Trajectory:
    """Refine a single item given as its input fields (for Python users and tests).

    Args:
        fields: the row, e.g. ``{"text": "..."}``; ``id`` and ``reference`` are optional.
        config: the run's settings.
    """
    config = config or RunConfig()
    row = dict(fields)
    reference = row.pop("reference", None)
    item = Item(id=str(row.pop("id", "1")), line=1, fields=row, reference=reference)
    check_items([item], config, Path("<refine_one fields>"))
    records: list[Trajectory] = []
    async with open_refiner(config, [item]) as refiner:
        fatal = await _refine_chunk(refiner, 0, [item], records.append)
    if fatal is not None:
        raise fatal
    return records[0]
