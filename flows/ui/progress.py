"""Live progress of a run, read from its output file so it works for any flow runner.

The output JSONL is the single source of truth: each finished item is one line carrying its
drafts, attempts, cache flags and usage, so counting new lines gives items done and failed,
requests, cache hits and tokens without any shared in-memory state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.data.output_reader import OutputScan
from flows.data.records import request_dicts

__all__ = ["OutputWatcher"]


@dataclass
class OutputWatcher:
    """Counts the records appended to an output file since the last poll, one line at a time,
    by the rules of :mod:`flows.data.output_reader`: a torn tail waits for its newline, a foreign
    line is skipped (``foreign``), and an id counts once, as its latest record says: a record
    that supersedes one this watcher counted moves ``failed``, never ``done``.

    ``requests``, ``cache_hits`` and ``tokens`` count the requests behind every record read,
    superseded ones included: they were spent.

    Started at ``offset`` (where the last whole line ended when the run opened the file), it
    sees only what the run appends; ``done`` may start at the ids already there that the run
    will not take up again. Ids are checked against the ones this watcher has seen: those before
    ``offset`` were checked by the run's own scan, and a run appends each id at most once.
    """

    path: Path
    offset: int = 0
    done: int = 0
    failed: int = 0
    requests: int = 0
    cache_hits: int = 0
    tokens: int = 0
    _scan: OutputScan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._scan = OutputScan(self.path, self.offset)

    @property
    def ids(self) -> set[str]:
        """The ids counted since ``offset``."""
        return self._scan.ids

    @property
    def foreign(self) -> int:
        """Complete lines since ``offset`` that were not records, skipped."""
        return len(self._scan.foreign)

    def poll(self) -> None:
        """Count the records written since the last call; a missing file has none yet."""
        try:
            for _, record, before in self._scan.records():
                if before is None:
                    self.done += 1
                else:
                    self.failed -= before.status == "failed"
                self.failed += record["status"] == "failed"
                for draft in record.get("drafts") or []:
                    self._count(draft)
        except FileNotFoundError:
            return
        finally:
            self.offset = self._scan.offset

    def _count(self, draft: dict[str, Any]) -> None:
        """A step's request, its critique and judge requests, and its other candidates'."""
        for request, shared in request_dicts(draft):
            if request.get("cached"):
                self.cache_hits += 1
                continue
            self.requests += 0 if shared else request.get("attempts", 1)
            usage = request.get("usage") or {}
            self.tokens += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
