"""The terminal's progress bar for ``refine run``, drawn from an :class:`OutputWatcher`."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from flows.ui.progress import OutputWatcher

__all__ = ["RunProgress"]


class RunProgress:
    """A rich progress bar over an OutputWatcher: items done/failed, requests, hits, tokens, ETA."""

    def __init__(self, watcher: OutputWatcher, total: int, *, disable: bool = False) -> None:
        self.watcher = watcher
        self.progress = Progress(
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
            disable=disable,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task("run", total=total, stats="")

    def refresh(self) -> None:
        """Poll the file and redraw."""
        w = self.watcher
        w.poll()
        stats = f"failed {w.failed} · req {w.requests} · hits {w.cache_hits} · tok {w.tokens}"
        self.progress.update(self.task, completed=w.done, stats=stats)

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh()
        self.progress.stop()
