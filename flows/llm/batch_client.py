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
from collections.abc import Coroutine, Iterable
from contextvars import ContextVar
from typing import Any

from flows.config.batch import BatchFallback
from flows.config.endpoint import RetryConfig
from flows.data.records import Usage
from flows.llm.batch_files import custom_id_of
from flows.llm.batch_runner import BatchOutcome, BatchRunner, PendingRequest
from flows.llm.client import ChatClient, Completion, Message
from refine.errors import ConfigError, EndpointError, FatalEndpointError, RefineError

__all__ = ["BatchingClient"]

_ITEM: ContextVar[object | None] = ContextVar("refine_batch_item", default=None)


class BatchingClient:
    """Sends a step's requests as batches; the same calls as :class:`ChatClient`.

    Args:
        online: the run's chat client: builds request bodies, reads answers, and sends the
            requests that fall back online.
        runner: submits, re-attaches to and follows the batches of each round.
        retry: ``max_attempts`` bounds the batches a request is put in.
        fallback: what becomes of a request a batch left unanswered.
    """

    def __init__(
        self, online: ChatClient, runner: BatchRunner, retry: RetryConfig, fallback: BatchFallback
    ) -> None:
        self.online = online
        self.runner = runner
        self.retry = retry
        self.fallback = fallback
        self.answered_online = 0
        self._requests: dict[str, PendingRequest] = {}
        self._queue: list[PendingRequest] = []
        self._active: set[object] = set()
        self._waits: dict[object, int] = {}
        self._blocked = 0
        self._round: asyncio.Task[None] | None = None
        self._online_tasks: set[asyncio.Task[None]] = set()
        self._fatal: RefineError | None = None

    @property
    def endpoint(self) -> Any:
        return self.online.endpoint

    @property
    def http_attempts(self) -> int:
        """HTTP calls of the run: online requests plus Files and Batch API calls."""
        return self.online.http_attempts + self.runner.api.http_attempts

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
            request = PendingRequest(custom_id, body, messages, logprobs, sampling, future)
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
        request: PendingRequest,
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
            await self.runner.run(requests, self._apply)
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

    def _apply(self, outcome: BatchOutcome) -> None:
        """Hand an ended batch's answers and refusals to their askers; ask the rest again."""
        for request, body in outcome.answered:
            self._settle(request, ("batch", body, outcome.latency, request.submissions))
        for request, error in outcome.refused:
            self._settle(request, error=error)
        self._unanswered(outcome.unanswered, outcome.why)

    def _unanswered(self, requests: list[PendingRequest], why: str) -> None:
        """Requests a batch did not answer: asked again (next batch, or online), or failed
        once they were in ``max_attempts`` batches."""
        for request in requests:
            if request.submissions >= self.retry.max_attempts:
                self._settle(
                    request,
                    error=EndpointError(
                        f"no answer after {request.submissions} batch(es): {why}",
                        url=self.runner.api.url,
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
            self.runner.log(f"{len(requests)} request(s) asked again {where}: {why}")

    async def _ask_online(self, request: PendingRequest) -> None:
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
        """Ask the provider to cancel this run's open batches (a stopped run); their ids."""
        return await self.runner.cancel_open()

    async def aclose(self) -> None:
        """Stop following batches (they go on at the provider, and are re-attached by a run
        started again) and close both clients."""
        tasks = [t for t in (self._round, *self._online_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.runner.api.aclose()
        await self.online.aclose()


def _batch_priced(answer: Completion) -> Completion:
    usage: Usage = answer.usage.model_copy(update={"batch": True})
    return dataclasses.replace(answer, usage=usage)
