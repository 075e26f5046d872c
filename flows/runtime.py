"""Builds what a run needs from its config, and checks the input before any request is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from flows.cache import RequestCache
from flows.client import ChatClient
from flows.dataset import read_items
from flows.engine import Refiner, input_fields
from flows.records import Item
from flows.settings import RunConfig, resolve_api_key
from postprocess import default_chain_for, default_cleaners
from prompts import (
    ENGINE_VARIABLES,
    TaskKind,
    TemplateEnvironment,
    build_environment,
    check_rows,
    get_task_kind,
    load_examples,
    packaged_examples,
)

__all__ = ["load_checked_items", "open_refiner", "templates_for"]


def templates_for(config: RunConfig) -> tuple[TaskKind, TemplateEnvironment]:
    """The task kind and a fresh template environment (user folders first, then packaged)."""
    kind = get_task_kind(config.task)
    env = build_environment(config.template_dirs, max_output_chars=config.max_prompt_chars)
    return kind, env


def load_checked_items(path: Path, config: RunConfig) -> list[Item]:
    """Read ``path`` and check every row against the variables its templates use.

    Raises InputError (every bad line at once) or MissingFieldsError before any request.
    """
    items = read_items(path)
    kind, env = templates_for(config)
    rows = ((item.line, input_fields(item, kind, config)) for item in items)
    check_rows(env, kind.name, rows, set(ENGINE_VARIABLES), path)
    return items


@asynccontextmanager
async def open_refiner(config: RunConfig) -> AsyncIterator[Refiner]:
    """A Refiner with its client, cache, cleaners and few-shot demos; closes the client after."""
    kind, env = templates_for(config)
    chain = config.postprocess or default_chain_for(kind.plain_text, config.max_output_chars)
    clean = default_cleaners().build_chain(chain)
    examples_path = config.examples_path or packaged_examples(kind.name)
    examples = load_examples(examples_path) if examples_path else []
    cache = RequestCache(config.cache_dir) if config.use_cache else None
    client = ChatClient(
        config.endpoint,
        config.retry,
        resolve_api_key(config.config_file),
        max_in_flight=config.concurrency,
    )
    try:
        yield Refiner(config, kind, env, client, cache, clean, examples)
    finally:
        await client.aclose()
