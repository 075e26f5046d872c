"""Step-major refinement through a Batch API (``mode = "batch"``, ``refine run --batch-api``).

For each step, every item still running renders its prompt, and the step's requests go to the
endpoint's Batch API together (:class:`~flows.llm.batch_client.BatchingClient`); when the
answers are back, each item is cleaned, validated, scored and stopped exactly as online, and the
next step starts. One Prefect task per step (``batch-step-2``), with a progress artifact while
the provider works. A dataset bigger than ``[batch] max_items_per_wave`` runs in waves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from itertools import count, islice

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.data.records import Item, Trajectory
from flows.llm.batch_client import BatchingClient
from flows.llm.batch_runner import BatchProgress
from flows.loop.refiner import ItemRun, Refiner
from flows.ui.batch_progress import BatchStepFeed
from refine.errors import ConfigError, FatalEndpointError, RefineError, first_error

__all__ = ["batch_step", "refine_step_major"]


class Wave:
    """Items taken through their steps together; a plain class, as :class:`flows.batch.Chunk`
    is, so Prefect links tasks by identity instead of walking the drafts."""

    def __init__(self, index: int, runs: list[ItemRun], fatal: RefineError | None = None) -> None:
        self.index = index
        self.runs = runs
        self.fatal = fatal


def _step_name(parameters: dict[str, object]) -> str:
    wave = parameters["wave"]
    label = f"batch-step-{parameters['step']}"
    return (
        label
        if not isinstance(wave, Wave) or wave.index == 0
        else f"{label} [wave {wave.index + 1}]"
    )


@task(
    name="batch-step",
    task_run_name=_step_name,  # type: ignore[arg-type]
    cache_policy=NO_CACHE,
    retries=0,
)
async def batch_step(refiner: Refiner, wave: Wave, upstream: list[Wave], step: int) -> Wave:
    """Run step ``step`` for the wave's running items, their requests in batches.

    Args:
        refiner: the run's refiner; its client is a BatchingClient.
        wave: the items; ``upstream``: the previous step's result (links the DAG).
        step: 1-based step number.

    Returns:
        A new Wave over the same runs; what stops the whole run (a 401/403, a batch that fails
        validation, a broken configuration) is carried on it as ``fatal``.
    """
    client = refiner.calls.client
    assert isinstance(client, BatchingClient)
    active = [run for run in wave.runs if not run.done]
    feed = BatchStepFeed(step)
    seen: list[BatchProgress] = []

    async def report(progress: BatchProgress) -> None:
        seen[:] = [progress]
        await feed.report(progress.completed, progress.failed, progress.total, progress.describe())

    runner = client.runner
    runner.step, runner.on_progress, runner.log = step, report, get_run_logger().info
    client.expect(id(run) for run in active)
    fatal: RefineError | None = None
    try:
        try:
            async with asyncio.TaskGroup() as group:  # a fatal error cancels the siblings
                for run in active:
                    group.create_task(client.run_item(id(run), refiner.step(run, step)))
        except* (FatalEndpointError, ConfigError) as stopped:
            fatal = first_error(stopped)
    except BaseExceptionGroup as stopped:  # a stop signal (Prefect's TerminationSignal): as is
        raise first_error(stopped) from None
    if seen:
        last = seen[0]
        await feed.report(last.completed, last.failed, last.total, last.describe(), final=True)
    return Wave(wave.index, wave.runs, fatal=fatal)


async def refine_step_major(
    refiner: Refiner, items: Iterable[Item], on_done: Callable[[Trajectory], None]
) -> RefineError | None:
    """Take ``items`` through their steps, a step at a time over all of them (in waves of
    ``[batch] max_items_per_wave``, read from ``items`` one wave at a time), handing each to
    ``on_done`` once it is done.

    Returns the error that stops the whole run, if one happened. A cancelled run (Ctrl-C, a
    stop signal, a cancel in the Prefect UI) asks the provider to cancel its open batches.
    """
    client = refiner.calls.client
    assert isinstance(client, BatchingClient)
    size = refiner.config.batch.max_items_per_wave
    try:
        pending = iter(items)
        for index in count():
            runs = [refiner.start(item) for item in islice(pending, size)]
            if not runs:
                break
            wave = Wave(index, runs)
            upstream: list[Wave] = []
            for step in range(1, refiner.config.steps + 1):
                active = [run for run in runs if not run.done]
                if not active:
                    break
                wave = await batch_step(refiner, wave, upstream, step)
                upstream = [wave]
                if wave.fatal is not None:
                    return wave.fatal
                for run in active:
                    if run.done:
                        on_done(refiner.finish(run))
            runs.clear()
    except BaseException as exc:
        if isinstance(exc, Exception):  # an error, not a stop: its batches stay to re-attach
            raise
        # a stop: Ctrl-C, SIGTERM (as Stopped, or Prefect's TerminationSignal), a cancel
        cancelled = await asyncio.shield(client.cancel_open())
        if cancelled:
            get_run_logger().warning(
                "run cancelled: asked the endpoint to cancel batch(es) %s", ", ".join(cancelled)
            )
        raise
    return None
