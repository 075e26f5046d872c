"""The run's Prefect artifacts: live progress, the per-step table, and sample trajectories.

All three are computed from the output file (see :mod:`flows.ui.run_stats`), never from state
shared with the flow's tasks, so the flow only wraps its body in :func:`run_dashboard`:

- a **progress** artifact, updated as chunks finish (polled from the output file, whose lines
  are appended when a chunk's step returns), started by the flow's body once it has opened the
  output, from the figures of that one scan;
- at the end, a **table** artifact (per step: items, mean reward, tokens, latency p50/p95,
  cache hits, drafts with problems, failures) and a **markdown** artifact (a few items' drafts
  step by step, each a word-level diff of the one before).

Publishing an artifact never fails the run: a refused call is logged as a warning.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from uuid import UUID

from flows.config.run import RunConfig
from flows.ui.labels import run_name, run_tags
from flows.ui.progress import OutputWatcher
from flows.ui.run_stats import RunStats, read_run_stats
from flows.ui.samples import samples_markdown

__all__ = ["ProgressFeed", "artifact_key", "publish_summary", "run_dashboard"]

POLL_S = 1.0


def artifact_key(kind: str, input_path: Path, config: RunConfig) -> str:
    """``refine-steps-summarize-reviews``: per dataset and task, so the UI's Artifacts page keeps
    one history for each (keys allow lowercase letters, digits and dashes only)."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{config.task}-{input_path.stem}".lower()).strip("-")
    return f"refine-{kind}-{slug}"[:100]


async def _label_flow_run(tags: list[str]) -> None:
    """Add ``tags`` to the current flow run (the decorator's tags are fixed at import)."""
    from prefect import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    merged = sorted({*context.flow_run.tags, *tags})
    async with get_client() as client:
        await client.update_flow_run(context.flow_run.id, tags=merged)
    context.flow_run.tags = merged


class ProgressFeed:
    """The progress artifact of a run, following its output file once the flow has started it.

    :func:`run_dashboard` hands one to the flow's body, which calls :meth:`start` once it has
    loaded the items and opened the output: the count of items and the resume scan's figures
    (records already there, the offset of the last whole line) are all the artifact needs, so
    neither the dataset nor the output is read again for it.
    """

    def __init__(self, output_path: Path, key: str) -> None:
        self.output_path = output_path
        self.key = key
        self.total = 1
        self.watcher: OutputWatcher | None = None
        self.artifact_id: UUID | None = None
        self.shown = -1.0
        self._follower: asyncio.Task[None] | None = None

    def start(self, *, items: int, done: int, offset: int) -> None:
        """Publish the progress and keep it current until the body ends.

        Args:
            items: the run's items (resumed ones included).
            done: records the output held when the run opened it.
            offset: where its last whole line ended then: only later lines are new.
        """
        if self._follower is not None:
            raise RuntimeError("the progress artifact is started once per run")
        self.total = max(items, done, 1)
        self.watcher = OutputWatcher(self.output_path, offset=offset, done=done)
        self._follower = asyncio.create_task(self._follow())

    async def update(self) -> None:
        """Poll the output and publish the percentage when it moved; nothing before start."""
        from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

        w = self.watcher
        if w is None:
            return
        w.poll()
        percent = round(min(100.0, 100.0 * w.done / self.total), 1)
        if percent == self.shown:
            return
        description = (
            f"{w.done} of {self.total} items done ({w.failed} failed) · {w.requests} requests · "
            f"{w.cache_hits} cache hits · {w.tokens} tokens"
        )
        if self.artifact_id is None:
            self.artifact_id = await acreate_progress_artifact(
                percent, key=self.key, description=description
            )
        else:
            await aupdate_progress_artifact(self.artifact_id, percent, description)
        self.shown = percent

    async def _follow(self) -> None:
        while True:
            await _quietly(self.update())
            await asyncio.sleep(POLL_S)

    async def stop(self, *, final: bool) -> None:
        """Stop following; with ``final``, publish the last figures (the body ended)."""
        if self._follower is None:
            return
        self._follower.cancel()
        with suppress(asyncio.CancelledError):
            await self._follower
        if final:
            await _quietly(self.update())


async def _quietly(call: object) -> None:
    """Await an artifact call; log a refusal instead of failing the run."""
    from prefect import get_run_logger

    try:
        await call  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - an artifact is never worth a failed run
        get_run_logger().warning("artifact not published: %s", exc)


async def publish_summary(
    input_path: Path, output_path: Path, config: RunConfig, samples: int = 3
) -> RunStats:
    """Publish the per-step table and the sample-drafts markdown of ``output_path``."""
    from prefect import get_run_logger
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

    stats = await asyncio.to_thread(read_run_stats, output_path, samples)
    title = run_name(input_path, config)
    reward = f" (mean of reward `{stats.reward_label}`)" if stats.reward_label else ""
    await _quietly(
        acreate_table_artifact(
            stats.rows(),
            key=artifact_key("steps", input_path, config),
            description=f"{title}: {stats.ok} ok, {stats.failed} failed, per step{reward}",
        )
    )
    await _quietly(
        acreate_markdown_artifact(
            samples_markdown(stats.samples, f"{title}: sample drafts"),
            key=artifact_key("samples", input_path, config),
            description=f"{title}: {len(stats.samples)} items' drafts step by step",
        )
    )
    if stats.failed:
        get_run_logger().warning(
            "%d items failed; ids: %s%s",
            stats.failed,
            ", ".join(stats.failed_ids),
            " …" if stats.failed > len(stats.failed_ids) else "",
        )
    return stats


@asynccontextmanager
async def run_dashboard(
    input_path: Path, output_path: Path, config: RunConfig
) -> AsyncIterator[ProgressFeed]:
    """Wrap a batch flow's body: tags the flow run and its task runs, keeps the progress
    artifact current once the body starts it (see :class:`ProgressFeed`), and publishes the
    table and markdown artifacts when the body ends."""
    import prefect

    tags = run_tags(config)
    await _quietly(_label_flow_run(tags))
    progress = ProgressFeed(output_path, artifact_key("progress", input_path, config))
    ended = False  # normally or with an error; not cancelled or interrupted
    try:
        with prefect.tags(*tags):
            yield progress
        ended = True
    except Exception:
        ended = True
        raise
    finally:
        await progress.stop(final=ended)
        if ended:
            await publish_summary(input_path, output_path, config)
