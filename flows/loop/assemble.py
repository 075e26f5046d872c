"""Assembles a run: the refiner with its client, cache, renderer, cleaners and checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from flows.config.run import RunConfig
from flows.data.records import Item
from flows.llm.api_key import api_key_for
from flows.llm.batch_api import BatchAPI
from flows.llm.batch_client import BatchingClient
from flows.llm.batch_journal import BatchJournal, journal_path
from flows.llm.batch_runner import BatchRunner
from flows.llm.cache import RequestCache
from flows.llm.calls import ModelCalls, endpoint_identity
from flows.llm.client import ChatClient
from flows.llm.probe import probe_endpoint
from flows.loop.defaults import with_task_defaults
from flows.loop.plan import build_plan, cleaner_chain
from flows.loop.refiner import Refiner
from flows.loop.render import StepRenderer
from refine.errors import ConfigError

__all__ = ["open_refiner"]


EMPTY_ANSWERS_TO_STOP = 5
"""A run of at least this many items stops when its first this many answers are all empty; a
smaller run has its empty answers as failed items (a few failures, not a failure per row)."""


@asynccontextmanager
async def open_refiner(
    config: RunConfig,
    items: Sequence[Item],
    output_path: Path | None = None,
    *,
    count: int | None = None,
) -> AsyncIterator[Refiner]:
    """A Refiner with its client, cache, cleaners, checks and few-shot demos; closes the client
    after. ``items`` decide the task defaults (see :mod:`flows.loop.defaults`): the run's items,
    or the few that decide them (:attr:`flows.loop.preflight.CheckedInput.exemplars`) with
    ``count``, the number of items the run holds.

    With ``mode = "batch"`` the client sends requests through the endpoint's Batch API, and
    journals its batches beside ``output_path`` (required then: ConfigError without it).
    """
    if config.mode == "batch" and output_path is None:
        raise ConfigError('mode = "batch" needs an output file (its batch journal lives beside it)')
    config = with_task_defaults(config, items)
    plan = build_plan(config)
    renderer = StepRenderer.for_config(config)
    cache = RequestCache(config.cache_dir) if config.use_cache else None
    if cache is not None:
        cache.check_writable()
    if config.endpoint.base_url:  # nothing listening there: one error now, not one per item
        await asyncio.to_thread(
            probe_endpoint, config.endpoint.base_url, config.retry.connect_timeout_s
        )
    api_key = await api_key_for(config) if config.endpoint.send_api_key else None
    online = ChatClient(config.endpoint, config.retry, api_key, max_in_flight=config.concurrency)
    client: ChatClient | BatchingClient = online
    if config.mode == "batch" and output_path is not None:
        runner = BatchRunner(
            BatchAPI(config.endpoint, config.retry, api_key),
            BatchJournal(journal_path(output_path)),
            config.batch,
            endpoint_identity(config.endpoint),
            files_dir=output_path.with_name(output_path.name + ".batches"),
        )
        client = BatchingClient(online, runner, config.retry, config.batch_fallback)
    calls = ModelCalls(client, cache, config.endpoint, logprobs=plan.needs_logprobs)
    try:
        clean = cleaner_chain(config, renderer.kind)
        # the first few answers all empty: a broken chat template, not bad luck (issue 14)
        total = len(items) if count is None else count
        empty_limit = EMPTY_ANSWERS_TO_STOP if total >= EMPTY_ANSWERS_TO_STOP else 0
        yield Refiner(config, renderer, calls, clean, plan, empty_limit)
    finally:
        await client.aclose()
        if cache is not None:
            cache.close()
