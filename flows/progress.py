"""Live progress of a run, read from its output file so it works for any flow runner.

The output JSONL is the single source of truth: each finished item is one line carrying its
drafts, attempts, cache flags and usage, so counting new lines gives items done and failed,
requests, cache hits and tokens without any shared in-memory state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["OutputWatcher", "RunProgress"]


@dataclass
class OutputWatcher:
    """Reads complete lines appended to an output file since the last poll."""

    path: Path
    offset: int = 0
    done: int = 0
    failed: int = 0
    requests: int = 0
    cache_hits: int = 0
    tokens: int = 0

    def poll(self) -> None:
        """Count the records written since the last call; a torn tail waits for its newline."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        for raw in data[:end].splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            self.done += 1
            self.failed += record.get("status") == "failed"
            for draft in record.get("drafts", []):
                # a step's request, then its critique and judge requests
                for request in [draft, *draft.get("side_requests", [])]:
                    if request.get("cached"):
                        self.cache_hits += 1
                        continue
                    self.requests += request.get("attempts", 1)
                    usage = request.get("usage", {})
                    self.tokens += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        self.offset += end


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
