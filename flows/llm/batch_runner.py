"""Submitting, re-attaching to and following the batches of one round of requests.

:class:`BatchRunner` turns a round's requests into batch input files (split at the provider's
limits), uploads and creates them, journaling each before and after
(:mod:`flows.llm.batch_journal`), or re-attaches to the journaled batch that already holds a
request; it polls each batch with backoff, reports the provider's counts, and hands what each
ended batch answered to its caller (:class:`~flows.llm.batch_client.BatchingClient`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.config.batch import BatchConfig
from flows.llm.batch_api import TERMINAL, BatchAPI, BatchNotFound
from flows.llm.batch_files import (
    BatchResult,
    batch_errors,
    input_line,
    parse_results,
    provider_latency,
    retryable,
    split_lines,
)
from flows.llm.batch_journal import BatchJournal, JournalBatch
from flows.llm.client import Message
from refine.errors import EndpointError, FatalEndpointError, RefineError, first_error

__all__ = ["BatchOutcome", "BatchProgress", "BatchRunner", "PendingRequest"]

logger = logging.getLogger(__name__)

LOG_EVERY_S = 300.0
"""A batch's state is logged when its status changes, and at least this often (seconds)."""
RESUBMIT_CODES = frozenset({"token_limit_exceeded", "rate_limit_exceeded"})
"""Batch ``errors`` codes that mean "not now" (the provider's queue is full), not a bad file."""


@dataclass
class BatchProgress:
    """What the provider reports for a step's batches so far (summed over its files)."""

    step: int
    batches: int = 0
    total: int = 0
    completed: int = 0
    failed: int = 0
    statuses: dict[str, str] = field(default_factory=dict)  # batch id -> status
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch id -> request_counts

    def describe(self) -> str:
        states = ", ".join(sorted(set(self.statuses.values()))) or "preparing"
        return (
            f"step {self.step}: {self.completed} of {self.total} requests answered, "
            f"{self.failed} failed, in {self.batches} batch(es) ({states})"
        )


@dataclass(eq=False)
class PendingRequest:
    """A request waiting for a batch: its body and id, what an online retry needs, the future
    its askers wait on (their items in ``waiters``), and the batches it has been in."""

    custom_id: str
    body: dict[str, Any]
    messages: list[Message]
    logprobs: bool
    sampling: dict[str, Any] | None
    future: asyncio.Future[tuple[str, Any, float, int]]
    waiters: list[object] = field(default_factory=list)
    submissions: int = 0
    seen: set[str] = field(default_factory=set)  # file ids of batches this run read it from


@dataclass
class BatchOutcome:
    """What one ended batch did for its requests: answered (with the chat completion body),
    refused for good (a 400: the error), or left unanswered (``why``: to ask again)."""

    answered: list[tuple[PendingRequest, Any]] = field(default_factory=list)
    refused: list[tuple[PendingRequest, EndpointError]] = field(default_factory=list)
    unanswered: list[PendingRequest] = field(default_factory=list)
    why: str = ""
    latency: float = 0.0


class BatchRunner:
    """Runs the batches of a run's rounds; counts what it submitted and re-attached to.

    Args:
        api: the endpoint's Files and Batch APIs.
        journal: the run's batch journal (beside the output).
        config: polling, file limits and the completion window.
        endpoint_id: the endpoint as the journal keys it (no secret).
        files_dir: where a copy of each uploaded input file is kept (``vllm run-batch`` reads
            the same files); None keeps none.
    """

    def __init__(
        self,
        api: BatchAPI,
        journal: BatchJournal,
        config: BatchConfig,
        endpoint_id: str,
        files_dir: Path | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.api = api
        self.journal = journal
        self.config = config
        self.endpoint_id = endpoint_id
        self.files_dir = files_dir
        self._sleep = sleep
        self.step = 1
        self.on_progress: Callable[[BatchProgress], Awaitable[None]] | None = None
        self.log: Callable[[str], None] = logger.info  # the run's logger, where one runs
        self.batches_submitted = 0
        self.batches_reattached = 0
        self.requests_submitted = 0
        self._rounds: dict[int, int] = {}  # step -> rounds started (drafts, then critiques, ...)
        self._open: dict[str, str] = {}  # batch id -> file id, not yet ended

    async def run(
        self, requests: list[PendingRequest], settle: Callable[[BatchOutcome], None]
    ) -> None:
        """Submit (or re-attach to) the batches holding ``requests``; hand each batch's
        outcome to ``settle`` as soon as it ends.

        Raises:
            FatalEndpointError: a batch failed validation, or the provider refused the files.
        """
        holding = self.journal.latest_holding(self.endpoint_id)
        attach: dict[str, list[PendingRequest]] = {}
        fresh: list[PendingRequest] = []
        for request in requests:
            batch = holding.get(request.custom_id)
            if batch is not None and batch.file_id not in request.seen:
                attach.setdefault(batch.file_id, []).append(request)
            else:
                fresh.append(request)
        jobs: list[tuple[JournalBatch, list[PendingRequest]]] = []
        for file_id, share in attach.items():
            batch = self.journal.batches[file_id]
            if batch.batch_id is None:
                found = await self.api.find_by_input(file_id, batch.uploaded_at)
                if found is None:  # killed between upload and create: never submitted
                    fresh.extend(share)
                    continue
                self.journal.submitted(file_id, found["id"])
            self.log(
                f"step {self.step}: re-attached to batch {batch.batch_id} (submitted by an "
                f"earlier run; {len(share)} of its requests still wanted)"
            )
            self.batches_reattached += 1
            jobs.append((batch, share))
        jobs.extend(await self._submit(fresh))
        progress = BatchProgress(step=self.step, batches=len(jobs))
        try:
            async with asyncio.TaskGroup() as group:  # a batch failing validation stops the rest
                for batch, share in jobs:
                    group.create_task(self._follow(batch, share, progress, settle))
        except BaseExceptionGroup as stopped:
            raise first_error(stopped) from None

    async def _submit(
        self, requests: list[PendingRequest]
    ) -> list[tuple[JournalBatch, list[PendingRequest]]]:
        """Upload and create batches for ``requests``, journaling each before and after."""
        if not requests:
            return []
        by_id = {request.custom_id: request for request in requests}
        round_ = self._rounds[self.step] = self._rounds.get(self.step, 0) + 1
        lines = (
            (request.custom_id, input_line(request.custom_id, request.body)) for request in requests
        )
        parts = split_lines(lines, self.config.max_requests_per_file, self.config.max_file_bytes)
        jobs = []
        for number, part in enumerate(parts, 1):
            data = b"".join(line for _, line in part)
            name = f"refine-step-{self.step}-round-{round_}-part-{number}.jsonl"
            file_id = await self.api.upload(name, data)
            custom_ids = [custom_id for custom_id, _ in part]
            self.journal.uploaded(file_id, self.endpoint_id, self.step, custom_ids, round_)
            self._keep_copy(name, file_id, data)
            made = await self.api.create(
                file_id,
                self.config.completion_window,
                {"refine_step": str(self.step), "refine_round": str(round_)},
            )
            self.journal.submitted(file_id, made["id"])
            self.batches_submitted += 1
            self.requests_submitted += len(part)
            self.log(
                f"step {self.step}: batch {made['id']} submitted ({len(part)} requests, "
                f"{len(data):,} bytes, round {round_})"
            )
            jobs.append((self.journal.batches[file_id], [by_id[c] for c in custom_ids]))
        return jobs

    def _keep_copy(self, name: str, file_id: str, data: bytes) -> None:
        if self.files_dir is None:
            return
        try:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            target = self.files_dir / f"{name.removesuffix('.jsonl')}-{file_id}.jsonl"
            partial = target.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(target)
        except OSError as exc:  # a copy for the user; the batch itself is submitted
            logger.warning("could not keep a copy of %s in %s: %s", name, self.files_dir, exc)

    async def _follow(
        self,
        batch: JournalBatch,
        share: list[PendingRequest],
        progress: BatchProgress,
        settle: Callable[[BatchOutcome], None],
    ) -> None:
        """Poll one batch to its end with backoff, then settle its share of the requests."""
        assert batch.batch_id is not None
        batch_id = batch.batch_id
        self._open[batch_id] = batch.file_id
        for request in share:
            request.submissions += 1
            request.seen.add(batch.file_id)
        started = told = time.monotonic()
        wait = self.config.poll_initial_s
        while True:  # a cancelled run leaves the batch in _open: cancel_open() cancels it
            try:
                state = await self.api.retrieve(batch_id)
            except BatchNotFound as exc:
                self._open.pop(batch_id, None)
                logger.warning("%s: its requests are asked again", exc)
                settle(BatchOutcome(unanswered=share, why=f"batch {batch_id} is unknown"))
                return
            status = str(state.get("status"))
            counts = state.get("request_counts") or {}
            if progress.statuses.get(batch_id) != status or time.monotonic() - told > LOG_EVERY_S:
                told = time.monotonic()
                self.log(
                    f"step {self.step}: batch {batch_id} {status}: {counts.get('completed', 0)} "
                    f"of {counts.get('total', 0)} answered, {counts.get('failed', 0)} failed"
                )
            progress.statuses[batch_id] = status
            await self._report(progress, batch_id, counts)
            if status in TERMINAL:
                break
            await self._sleep(wait)
            wait = min(self.config.poll_max_s, wait * 1.5)
        self._open.pop(batch_id, None)
        latency = provider_latency(state) or time.monotonic() - started
        settle(await self._outcome(batch_id, state, share, latency))
        if not batch.closed:
            self.journal.closed(batch_id, status)

    async def _report(self, progress: BatchProgress, batch_id: str, counts: dict[str, Any]) -> None:
        progress.counts[batch_id] = counts
        every = progress.counts.values()
        progress.total = sum(int(c.get("total") or 0) for c in every)
        progress.completed = sum(int(c.get("completed") or 0) for c in every)
        progress.failed = sum(int(c.get("failed") or 0) for c in every)
        if self.on_progress is not None:
            await self.on_progress(progress)

    async def _outcome(
        self, batch_id: str, state: dict[str, Any], share: list[PendingRequest], latency: float
    ) -> BatchOutcome:
        """What an ended batch did for each of ``share``, from its output and error files."""
        status = state.get("status")
        if status == "failed":
            codes, described = batch_errors(state)
            if codes and codes <= RESUBMIT_CODES:
                why = f"batch {batch_id} was refused for now: {described}"
                return BatchOutcome(unanswered=share, why=why)
            reason = described or "no reason given"
            raise FatalEndpointError(
                f"{self.api.url}: batch {batch_id} failed validation: {reason}", url=self.api.url
            )
        results: dict[str, BatchResult] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = state.get(key)
            if file_id:
                try:
                    data = await self.api.content(str(file_id))
                except BatchNotFound as exc:
                    logger.warning("%s: its requests are asked again", exc)
                    continue
                results.update(parse_results(data, f"batch {batch_id} {key.removesuffix('_id')}"))
        outcome = BatchOutcome(latency=latency)
        for request in share:
            result = results.get(request.custom_id)
            if result is not None and result.answered:
                outcome.answered.append((request, result.body))
            elif result is not None and not retryable(result):
                error = EndpointError(
                    f"{self.api.url} answered {result.status} in batch {batch_id}: "
                    f"{result.message()}",
                    status=result.status,
                    url=self.api.url,
                )
                outcome.refused.append((request, error))
            else:
                outcome.unanswered.append(request)
        ended = f"batch {batch_id} ended {status}"
        outcome.why = ended if status != "completed" else f"errors in batch {batch_id}"
        return outcome

    async def cancel_open(self) -> list[str]:
        """Ask the provider to cancel this run's open batches (a cancelled run); their ids.

        They stay in the journal: a run started again reads what they answered before the
        cancel took effect and asks the rest again.
        """
        cancelled = []
        for batch_id in list(self._open):
            try:
                await self.api.cancel(batch_id)
                cancelled.append(batch_id)
            except RefineError as exc:
                logger.warning("could not cancel batch %s: %s", batch_id, exc)
        return cancelled
