"""A chat client whose requests wait for the next batch round: step-major refinement.

:class:`BatchingClient` answers :class:`~flows.llm.calls.ModelCalls` like
:class:`~flows.llm.client.ChatClient` does, so the refinement loop, the request cache and the
checks run unchanged; only where an answer comes from differs. A request joins the round's
queue, and when every item of the step waits for an answer (each item's step is under
:meth:`BatchingClient.run_item`), the round's requests go into batch input files, are uploaded,
submitted and polled, and each answer is handed to the item that asked. Critiques, judges and
best-of-N candidates of a step come in later rounds of the same step.

Durability (:mod:`flows.llm.batch_journal`): a batch is journaled before and after it is
created; a request rendered again after a restart has the same ``custom_id`` and is answered
from the batch that holds it, so it is never submitted twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.config.batch import BatchConfig, BatchFallback
from flows.config.endpoint import RetryConfig
from flows.data.records import Usage
from flows.llm.batch_api import TERMINAL, BatchAPI, BatchNotFound
from flows.llm.batch_files import BatchResult, custom_id_of, input_line, parse_results, split_lines
from flows.llm.batch_journal import BatchJournal, JournalBatch
from flows.llm.client import ChatClient, Completion, Message
from flows.llm.retry import RETRYABLE_STATUS
from refine.errors import ConfigError, EndpointError, FatalEndpointError, RefineError, first_error

__all__ = ["BatchProgress", "BatchingClient"]

logger = logging.getLogger(__name__)

_ITEM: ContextVar[object | None] = ContextVar("refine_batch_item", default=None)
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
class _Request:
    custom_id: str
    body: dict[str, Any]
    messages: list[Message]
    logprobs: bool
    sampling: dict[str, Any] | None
    future: asyncio.Future[tuple[str, Any, float, int]]
    waiters: list[object] = field(default_factory=list)
    submissions: int = 0
    seen: set[str] = field(default_factory=set)  # file ids of batches this run read it from


class BatchingClient:
    """Sends a step's requests as batches; the same calls as :class:`ChatClient`.

    Args:
        online: the run's chat client: builds request bodies, reads answers, and sends the
            requests that fall back online.
        api: the endpoint's Files and Batch APIs.
        journal: the run's batch journal (beside the output).
        endpoint_id: the endpoint as the journal keys it (no secret).
        files_dir: where a copy of each uploaded input file is kept (``vllm run-batch`` reads
            the same files); None keeps none.
    """

    def __init__(
        self,
        online: ChatClient,
        api: BatchAPI,
        journal: BatchJournal,
        config: BatchConfig,
        retry: RetryConfig,
        fallback: BatchFallback,
        endpoint_id: str,
        files_dir: Path | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.online = online
        self.api = api
        self.journal = journal
        self.config = config
        self.retry = retry
        self.fallback = fallback
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
        self.answered_online = 0
        self._requests: dict[str, _Request] = {}
        self._queue: list[_Request] = []
        self._active: set[object] = set()
        self._waits: dict[object, int] = {}
        self._blocked = 0
        self._round: asyncio.Task[None] | None = None
        self._online_tasks: set[asyncio.Task[None]] = set()
        self._open: dict[str, str] = {}  # batch id -> file id, not yet terminal
        self._fatal: RefineError | None = None

    @property
    def endpoint(self) -> Any:
        return self.online.endpoint

    @property
    def http_attempts(self) -> int:
        """HTTP calls of the run: online requests plus Files and Batch API calls."""
        return self.online.http_attempts + self.api.http_attempts

    # -- items of a step ---------------------------------------------------------------------

    def expect(self, items: Iterable[object]) -> None:
        """Name the items whose step runs now: no round starts before each of them waits for
        an answer or is done."""
        for item in items:
            if item not in self._active:
                self._active.add(item)
                self._blocked += self._waits.get(item, 0) > 0

    async def run_item(self, item: object, step: Coroutine[Any, Any, None]) -> None:
        """Run one item's step, its requests marked as the item's."""
        token = _ITEM.set(item)
        try:
            await step
        finally:
            _ITEM.reset(token)
            if item in self._active:
                self._active.discard(item)
                self._blocked -= self._waits.get(item, 0) > 0
            self._maybe_start_round()

    def _block(self, item: object) -> None:
        count = self._waits.get(item, 0)
        self._waits[item] = count + 1
        if count == 0 and item in self._active:
            self._blocked += 1

    def _unblock(self, item: object) -> None:
        count = self._waits[item] - 1
        if count:
            self._waits[item] = count
            return
        del self._waits[item]
        if item in self._active:
            self._blocked -= 1

    # -- the calls ModelCalls makes ----------------------------------------------------------

    async def complete(
        self,
        messages: list[Message],
        *,
        logprobs: bool = False,
        sampling: dict[str, Any] | None = None,
    ) -> Completion:
        """The answer to ``messages`` from the next batch round (or online, on fallback).

        A request identical to one already waiting in this round is not asked again: it gets
        that one's answer with ``attempts`` 0, which the caller records as an answer that cost
        nothing (as a cached one). Raises EndpointError as :meth:`ChatClient.complete` does.
        """
        api, body, latency, attempts = await self._ask(messages, logprobs, sampling)
        if api == "online":
            return dataclasses.replace(body, attempts=attempts)  # type: ignore[no-any-return]
        answer = self.online.completion_of(body, messages, latency, attempts)
        return _batch_priced(answer)

    async def complete_choices(
        self,
        messages: list[Message],
        n: int,
        *,
        logprobs: bool = False,
        sampling: dict[str, Any] | None = None,
    ) -> list[Completion]:
        """N answers to ``messages`` in one batch request with ``n``."""
        fields = {**(self.endpoint.sampling() if sampling is None else sampling), "n": n}
        api, body, latency, attempts = await self._ask(messages, logprobs, fields)
        if api == "online":
            return [dataclasses.replace(a, attempts=attempts) for a in body]
        answers = self.online.choices_of(body, messages, n, latency, attempts)
        return [_batch_priced(answer) for answer in answers]

    async def _ask(
        self, messages: list[Message], logprobs: bool, sampling: dict[str, Any] | None
    ) -> tuple[str, Any, float, int]:
        if self._fatal is not None:
            raise self._fatal
        body = self.online.request_body(messages, logprobs, sampling)
        custom_id = custom_id_of(body)
        request = self._requests.get(custom_id)
        first = request is None  # else an identical request of this round: its answer shared
        if request is None:
            future = asyncio.get_running_loop().create_future()
            request = _Request(custom_id, body, messages, logprobs, sampling, future)
            self._requests[custom_id] = request
            self._queue.append(request)
        item = _ITEM.get()
        request.waiters.append(item)
        self._block(item)
        self._maybe_start_round()
        try:
            api, body, latency, attempts = await asyncio.shield(request.future)
            return api, body, latency, attempts if first else 0
        except asyncio.CancelledError:
            if not request.future.done():
                request.waiters.remove(item)
                self._unblock(item)
            raise

    def _settle(
        self,
        request: _Request,
        result: Any = None,
        error: BaseException | None = None,
        *,
        cancel: bool = False,
    ) -> None:
        for item in request.waiters:
            self._unblock(item)
        request.waiters.clear()
        self._requests.pop(request.custom_id, None)
        if request.future.done():
            return
        if cancel:
            request.future.cancel()
        elif error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result)

    # -- rounds ------------------------------------------------------------------------------

    def _maybe_start_round(self) -> None:
        if self._round is not None or not self._queue or self._blocked < len(self._active):
            return
        self._round = asyncio.create_task(self._run_round(), name="batch-round")

    async def _run_round(self) -> None:
        # Siblings of a waiting request (best-of-N candidates gathered at once) are scheduled
        # in the same turn of the loop: let them join before the round takes the queue.
        queued = -1
        while queued != len(self._queue):
            queued = len(self._queue)
            await asyncio.sleep(0)
        requests, self._queue = self._queue, []
        try:
            await self._answer(requests)
        except (FatalEndpointError, ConfigError) as exc:
            self._fatal = exc
            for request in [*requests, *self._queue]:
                self._settle(request, error=exc)
            self._queue.clear()
        except RefineError as exc:
            for request in requests:
                self._settle(request, error=exc)
        except asyncio.CancelledError:  # the run is stopping: its items are cancelled too
            for request in [*requests, *self._queue]:
                self._settle(request, cancel=True)
            raise
        except Exception as exc:  # a bug: no item may wait forever
            for request in requests:
                self._settle(request, error=EndpointError(f"batch round failed: {exc!r}"))
            raise
        except BaseException as exc:  # a stop signal landed here: the items stop with it
            for request in [*requests, *self._queue]:
                self._settle(request, error=exc)
            self._queue.clear()  # (they raise it; raised here too, it would go unheard)
        finally:
            self._round = None
            self._maybe_start_round()

    async def _answer(self, requests: list[_Request]) -> None:
        """Submit (or re-attach to) the batches holding ``requests`` and settle each."""
        holding = self.journal.latest_holding(self.endpoint_id)
        attach: dict[str, list[_Request]] = {}
        fresh: list[_Request] = []
        for request in requests:
            batch = holding.get(request.custom_id)
            if batch is not None and batch.file_id not in request.seen:
                attach.setdefault(batch.file_id, []).append(request)
            else:
                fresh.append(request)
        jobs: list[tuple[JournalBatch, list[_Request]]] = []
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
                    group.create_task(self._follow(batch, share, progress))
        except BaseExceptionGroup as stopped:
            raise first_error(stopped) from None

    async def _submit(self, requests: list[_Request]) -> list[tuple[JournalBatch, list[_Request]]]:
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
        self, batch: JournalBatch, share: list[_Request], progress: BatchProgress
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
                self._unanswered(share, f"batch {batch_id} is unknown to the endpoint")
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
        latency = _provider_latency(state) or time.monotonic() - started
        await self._settle_batch(batch_id, state, share, latency)
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

    async def _settle_batch(
        self, batch_id: str, state: dict[str, Any], share: list[_Request], latency: float
    ) -> None:
        status = state.get("status")
        if status == "failed":
            errors = ((state.get("errors") or {}).get("data")) or []
            codes = {str(e.get("code")) for e in errors if isinstance(e, dict)}
            described = "; ".join(
                f"line {e.get('line')}: {e.get('message')}"
                if e.get("line")
                else str(e.get("message"))
                for e in errors[:3]
                if isinstance(e, dict)
            )
            if codes and codes <= RESUBMIT_CODES:
                self._unanswered(share, f"batch {batch_id} was refused for now: {described}")
                return
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
        missing = []
        for request in share:
            result = results.get(request.custom_id)
            if result is not None and result.answered:
                self._settle(request, ("batch", result.body, latency, request.submissions))
            elif result is not None and not _retryable(result):
                self._settle(
                    request,
                    error=EndpointError(
                        f"{self.api.url} answered {result.status} in batch {batch_id}: "
                        f"{result.message()}",
                        status=result.status,
                        url=self.api.url,
                    ),
                )
            else:
                missing.append(request)
        if missing:
            why = (
                f"batch {batch_id} ended {status}"
                if status != "completed"
                else f"errors in batch {batch_id}"
            )
            self._unanswered(missing, why)

    def _unanswered(self, requests: list[_Request], why: str) -> None:
        """Requests a batch did not answer: asked again (next batch, or online), or failed
        once they were in ``max_attempts`` batches."""
        for request in requests:
            if request.submissions >= self.retry.max_attempts:
                self._settle(
                    request,
                    error=EndpointError(
                        f"no answer after {request.submissions} batch(es): {why}", url=self.api.url
                    ),
                )
            elif self.fallback == "online":
                task = asyncio.create_task(self._ask_online(request))
                self._online_tasks.add(task)
                task.add_done_callback(self._online_tasks.discard)
            else:
                self._queue.append(request)
        if requests:
            where = "online" if self.fallback == "online" else "in the next batch"
            self.log(f"{len(requests)} request(s) asked again {where}: {why}")

    async def _ask_online(self, request: _Request) -> None:
        try:
            if request.sampling is not None and "n" in request.sampling:
                n = int(request.sampling["n"])
                sampling = {k: v for k, v in request.sampling.items() if k != "n"}
                answer: Any = await self.online.complete_choices(
                    request.messages, n, logprobs=request.logprobs, sampling=sampling
                )
            else:
                answer = await self.online.complete(
                    request.messages, logprobs=request.logprobs, sampling=request.sampling
                )
        except RefineError as exc:
            self._settle(request, error=exc)
            return
        self.answered_online += 1
        attempts = answer[0].attempts if isinstance(answer, list) else answer.attempts
        self._settle(request, ("online", answer, 0.0, attempts))

    # -- the run's end -----------------------------------------------------------------------

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

    async def aclose(self) -> None:
        """Stop following batches (they go on at the provider, and are re-attached by a run
        started again) and close both clients."""
        tasks = [t for t in (self._round, *self._online_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.api.aclose()
        await self.online.aclose()


def _retryable(result: BatchResult) -> bool:
    """A request's error worth asking again: a rate limit, a timeout or a server error."""
    status = result.status
    return status is None or status in RETRYABLE_STATUS or status >= 500


def _batch_priced(answer: Completion) -> Completion:
    usage: Usage = answer.usage.model_copy(update={"batch": True})
    return dataclasses.replace(answer, usage=usage, api="batch")


def _provider_latency(state: dict[str, Any]) -> float | None:
    """Seconds from the batch's creation to its end, by the provider's own timestamps."""
    created = state.get("created_at")
    ended = next(
        (
            state[k]
            for k in ("completed_at", "expired_at", "cancelled_at", "failed_at")
            if state.get(k)
        ),
        None,
    )
    if isinstance(created, int | float) and isinstance(ended, int | float) and ended >= created:
        return float(ended - created)
    return None
