"""How a run uses a Batch API (``mode = "batch"``): the ``[batch]`` section of the config.

The limits are OpenAI's (https://platform.openai.com/docs/guides/batch, "Rate limits" and
"Preparing your batch file"): up to 50,000 requests and 200 MB per input file, and a 24 h
completion window, the only one OpenAI accepts. A provider with other limits sets them here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BatchConfig", "BatchFallback", "RunMode"]

RunMode = Literal["online", "batch"]
"""``online``: every request is sent when its item reaches it (item-major). ``batch``: a step's
requests of all items go into batch input files for the endpoint's Batch API (step-major)."""

BatchFallback = Literal["resubmit", "online"]
"""What becomes of a request a batch did not answer (in its error file, or left when it
expired): ``resubmit`` puts it in the next batch, ``online`` sends it at once as an online
request; both within the retry budget (``[retry] max_attempts`` answers in all)."""


class BatchConfig(BaseModel):
    """The ``[batch]`` table: polling, file limits and the completion window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    completion_window: str = Field(
        default="24h", description="the batch's completion window, as the provider names it"
    )
    poll_initial_s: float = Field(
        default=10.0, gt=0, description="seconds before a batch's first status check"
    )
    poll_max_s: float = Field(
        default=120.0, gt=0, description="the longest wait between two status checks"
    )
    max_requests_per_file: int = Field(default=50_000, ge=1, le=50_000)
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1024, le=200 * 1024 * 1024)
    max_items_per_wave: int = Field(
        default=50_000,
        ge=1,
        description="items taken through all their steps together; a bigger dataset runs in "
        "waves of this many (the run holds a wave's drafts in memory)",
    )

    @model_validator(mode="after")
    def _poll_order(self) -> BatchConfig:
        if self.poll_max_s < self.poll_initial_s:
            raise ValueError("poll_max_s must be at least poll_initial_s")
        return self
