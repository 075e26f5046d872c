"""The progress artifact of one ``batch-step-N`` task: what the provider reports of its batches.

A batch can take hours; the task's progress artifact shows, as the batch objects report them,
the requests completed and failed of the total, and the batches' statuses. Updated at most once
every few seconds; publishing it never fails the run.
"""

from __future__ import annotations

import time
from uuid import UUID

__all__ = ["BatchStepFeed"]

MIN_INTERVAL_S = 2.0


class BatchStepFeed:
    """Creates the step's progress artifact on the first report and updates it after."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._artifact: UUID | None = None
        self._last = 0.0

    async def report(
        self, completed: int, failed: int, total: int, text: str, *, final: bool = False
    ) -> None:
        """Publish ``completed + failed`` of ``total`` as the progress (0 to 100 %)."""
        now = time.monotonic()
        if not final and self._artifact is not None and now - self._last < MIN_INTERVAL_S:
            return
        self._last = now
        percent = 100.0 * (completed + failed) / total if total else 0.0
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self._artifact is None:
                self._artifact = await create_progress_artifact(  # type: ignore[misc]
                    progress=percent, description=text
                )
            else:
                await update_progress_artifact(  # type: ignore[misc]
                    self._artifact, progress=percent, description=text
                )
        except Exception as exc:  # noqa: BLE001 - an artifact is never worth a failed run
            from prefect import get_run_logger

            get_run_logger().warning("batch progress artifact not published: %s", exc)
