"""What a batch run did: the counts the flow returns and the CLI prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from flows.data.records import Trajectory

__all__ = ["BatchSummary", "Tally"]


class BatchSummary(BaseModel):
    """What a batch run did, returned by the flow and printed by the CLI.

    Every input row is accounted for: ``rows_read == invalid + skipped + ran``, and
    ``items == skipped + ran``; ``retried`` are among ``ran``.
    """

    output_path: Path
    rows_read: int  # records found in the input file, good and bad (those chosen: selection)
    invalid: int  # rows left out as invalid (skip_invalid)
    items: int  # valid items of the input
    skipped: int  # already finished in the output (resumed), not run
    ran: int  # taken up by this run: new items, and failed ones retried
    retried: int  # of ``ran``: items whose latest record was failed (retry_failed)
    failed_before: int  # items whose latest record is failed, from earlier runs, not retried
    ok: int
    failed: int
    http_attempts: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    stop_reasons: dict[str, int] = {}
    tokens_estimated: bool = False  # some answers came without usage: counted by estimate
    mode: str = "online"  # "batch": through the endpoint's Batch API (--batch-api)
    batches_submitted: int = 0  # batches this run created (re-attached ones not counted)
    batches_reattached: int = 0  # batches an earlier (killed) run created, read by this one
    batch_requests: int = 0  # requests in those batches
    batch_tokens: int = 0  # of prompt + completion tokens, those billed at the batch price
    answered_online: int = 0  # requests a batch left unanswered, sent online (batch_fallback)
    selection: str | None = None  # --limit / --sample: which rows of the input ran; None: all


@dataclass
class Tally:
    """Counts of the records written so far; the records themselves live only on disk."""

    ok: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    batch_tokens: int = 0
    stop_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, record: Trajectory) -> None:
        self.stop_reasons[record.stop_reason or "none"] += 1
        self.ok += record.status == "ok"
        self.failed += record.status == "failed"
        for draft in record.drafts:
            for cached, usage in draft.requests():
                if not cached:
                    self.prompt_tokens += usage.prompt_tokens
                    self.completion_tokens += usage.completion_tokens
                    self.tokens_estimated |= usage.estimated
                    self.batch_tokens += usage.tokens if usage.batch else 0
