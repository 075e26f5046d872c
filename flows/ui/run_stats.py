"""Figures of a run, computed from its output file: per step, and a few sample trajectories.

The output JSONL is the single source of truth (see :mod:`flows.ui.progress`): the file is read
line by line through :mod:`flows.data.output_reader`, so memory grows with the number of steps,
latencies and ids kept, never with the text of the records. Raw JSON records are read rather
than :class:`~flows.data.records.Trajectory` so that records written by older versions (no
``kind``, no ``rewards``) still count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.data.output_reader import OutputScan
from flows.data.records import request_dicts

__all__ = ["RunStats", "StepStats", "percentile", "read_run_stats", "step_label"]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks (numpy's
    default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def step_label(draft: dict[str, Any]) -> str:
    """``step-2`` for a plain draft, ``fix-2`` for an error-correction one: the task names."""
    kind = draft.get("kind") or "draft"
    prefix = "step" if kind == "draft" else kind
    return f"{prefix}-{draft.get('step', 0)}"


@dataclass
class StepStats:
    """What one step (``step-t`` or ``fix-t``) did across the run's items."""

    label: str
    step: int
    items: int = 0
    rewards: list[float] = field(default_factory=list)
    requests: int = 0  # sent, not answered from the cache: candidates, critiques, judges
    tokens: int = 0
    prompt_tokens: int = 0
    server_cached: int = 0  # prompt tokens the server took from its prefix cache (it says so)
    batch_tokens: int = 0  # of ``tokens``, those billed at a Batch API's price (usage.batch)
    latencies: list[float] = field(default_factory=list)
    cache_hits: int = 0
    with_problems: int = 0
    failures: int = 0
    candidates: int = 0  # answers drawn: a best-of-N draft's candidates, else 1 a draft
    sampled: int = 0  # drafts that drew candidates (best-of-N)
    winner_not_first: int = 0  # best-of-N: drafts whose winner was not candidate 0

    @property
    def mean_reward(self) -> float | None:
        """Mean of the primary reward over the drafts that have one; None when none has."""
        return sum(self.rewards) / len(self.rewards) if self.rewards else None

    def row(
        self, sampled: bool = False, prefix_cached: bool = False, batched: bool = False
    ) -> dict[str, Any]:
        """One row of the table artifact (latencies in seconds, rounded to the millisecond);
        ``sampled`` adds the best-of-N columns (a run where some step drew candidates),
        ``prefix_cached`` the share of prompt tokens the server re-used (a server that reports
        ``usage.prompt_tokens_details.cached_tokens``) and ``batched`` the tokens billed at a
        Batch API's price (``mode = "batch"``)."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        mean = self.mean_reward
        return (
            {
                "step": self.label,
                "items": self.items,
                "mean reward": None if mean is None else round(mean, 4),
                "requests": self.requests,
                "tokens": self.tokens,
                "latency p50 (s)": ms(percentile(self.latencies, 50)),
                "latency p95 (s)": ms(percentile(self.latencies, 95)),
                "cache hits": self.cache_hits,
                "drafts with problems": self.with_problems,
                "failures": self.failures,
            }
            | (
                {
                    "candidates per draft": round(self.candidates / self.items, 2)
                    if self.items
                    else 0,
                    "winner not candidate 0": self.winner_not_first,
                }
                if sampled
                else {}
            )
            | (
                {
                    "share of prompt tokens from server cache": (
                        round(self.server_cached / self.prompt_tokens, 3)
                        if self.prompt_tokens
                        else 0
                    )
                }
                if prefix_cached
                else {}
            )
            | ({"tokens at batch price": self.batch_tokens} if batched else {})
        )


@dataclass
class RunStats:
    """Totals and per-step figures of an output file, plus a few sample records."""

    records: int = 0
    complete_bytes: int = 0  # where the last whole line ends: a watcher of new lines starts here
    foreign: int = 0  # complete lines that are not records, skipped
    superseded: int = 0  # records a later one of their id supersedes, left out
    ok: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)
    steps: dict[str, StepStats] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    reward_label: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        """Table rows in step order, ``step-t`` before ``fix-t``."""
        ordered = sorted(self.steps.values(), key=lambda s: (s.step, s.label.startswith("fix")))
        sampled = any(stats.sampled for stats in ordered)
        prefix_cached = any(stats.server_cached for stats in ordered)
        batched = any(stats.batch_tokens for stats in ordered)
        return [stats.row(sampled, prefix_cached, batched) for stats in ordered]

    def add(self, record: dict[str, Any], samples: int) -> None:
        """Count one output record."""
        self.records += 1
        failed = record.get("status") == "failed"
        self.ok += record.get("status") == "ok"
        if failed:
            self.failed += 1
            if len(self.failed_ids) < 50:
                self.failed_ids.append(str(record.get("id")))
        drafts = record.get("drafts") or []
        label = record.get("reward")
        self.reward_label = self.reward_label or label
        for draft in drafts:
            self._add_draft(draft, label)
        if failed:
            # a failed item is counted at the step it could not finish: after a request failed
            # (stop reason "error", or none in an older record), the one after its last draft,
            # or step 1 when it has none; else (every draft had problems, e.g. max_steps) the
            # step of its last draft: a step after the last one never ran
            if drafts and record.get("stop_reason") not in (None, "error"):
                self._stats(drafts[-1]).failures += 1
            else:
                last = drafts[-1].get("step", 0) if drafts else 0
                self._stats({"step": last + 1}).failures += 1
        if len(self.samples) < samples and len(drafts) >= 2:
            self.samples.append(record)

    def _stats(self, draft: dict[str, Any]) -> StepStats:
        label = step_label(draft)
        if label not in self.steps:
            self.steps[label] = StepStats(label, int(draft.get("step", 0)))
        return self.steps[label]

    def _add_draft(self, draft: dict[str, Any], reward_label: str | None) -> None:
        stats = self._stats(draft)
        stats.items += 1
        rewards = draft.get("rewards") or {}
        if rewards:
            value = rewards.get(reward_label) if reward_label else next(iter(rewards.values()))
            if isinstance(value, int | float) and math.isfinite(value):
                stats.rewards.append(float(value))
        stats.with_problems += bool(draft.get("problems"))
        candidates = [c for c in draft.get("candidates") or [] if isinstance(c, dict)]
        stats.candidates += len(candidates) or 1
        stats.sampled += bool(candidates)
        stats.winner_not_first += bool(candidates) and draft.get("candidate") not in (0, None)
        answers = candidates or [draft]  # a best-of-N step's answers are its candidates
        hits = sum(bool(answer.get("cached")) for answer in answers)
        stats.cache_hits += hits
        if hits < len(answers):  # some answer came over the wire: the step has a latency
            stats.latencies.append(float(draft.get("latency_s") or 0.0))
        for request, shared in request_dicts(draft):
            if not request.get("cached"):
                usage = request.get("usage") or {}
                stats.requests += not shared
                stats.tokens += int(usage.get("prompt_tokens", 0))
                stats.tokens += int(usage.get("completion_tokens", 0))
                stats.prompt_tokens += int(usage.get("prompt_tokens", 0))
                stats.server_cached += int(usage.get("cached_tokens", 0))
                if usage.get("batch") is True:
                    stats.batch_tokens += int(usage.get("prompt_tokens", 0))
                    stats.batch_tokens += int(usage.get("completion_tokens", 0))


def read_run_stats(path: Path, samples: int = 3) -> RunStats:
    """Read ``path`` one line at a time into RunStats, by the rules of
    :mod:`flows.data.output_reader`: each id counts once, by its latest record (a record it
    supersedes, like a failed one a retry replaced, is left out), the torn tail is left out, and
    a foreign line is skipped and counted (figures are shown, never refused); a missing file has
    no records.

    Args:
        path: the run's output JSONL.
        samples: how many records with two drafts or more to keep for the sample view.
    """
    stats = RunStats()
    scan = OutputScan(path)
    try:
        for _, record in scan.latest_records():
            stats.add(record, samples)
    except FileNotFoundError:
        return stats
    stats.complete_bytes = scan.offset
    stats.foreign = len(scan.foreign)
    stats.superseded = scan.superseded
    return stats
