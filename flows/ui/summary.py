"""What a batch run did: the counts the flow returns and the CLI prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from flows.data.records import Trajectory

__all__ = ["BatchSummary", "Tally"]


class BatchSummary(BaseModel):
    """What a batch run did, returned by the flow and printed by the CLI."""

    output_path: Path
    items: int
    skipped: int
    failed_before: int
    ok: int
    failed: int
    http_attempts: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    stop_reasons: dict[str, int] = {}


@dataclass
class Tally:
    """Counts of the records written so far; the records themselves live only on disk."""

    ok: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, record: Trajectory) -> None:
        self.stop_reasons[record.stop_reason or "none"] += 1
        self.ok += record.status == "ok"
        self.failed += record.status == "failed"
        for draft in record.drafts:
            for cached, usage in [(draft.cached, draft.usage)] + [
                (side.cached, side.usage) for side in draft.side_requests
            ]:
                if not cached:
                    self.prompt_tokens += usage.prompt_tokens
                    self.completion_tokens += usage.completion_tokens
