"""Builds what a run needs from its config, and checks the input before any request is sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from flows.api_key import api_key_for
from flows.cache import RequestCache
from flows.client import ChatClient
from flows.endpoint_probe import probe_endpoint
from flows.engine import Refiner, input_fields, step_variables
from flows.loop_plan import LoopPlan, build_plan, check_loop_inputs
from flows.model_calls import ModelCalls
from flows.records import Draft, Item
from flows.settings import RunConfig
from flows.task_defaults import with_task_defaults
from postprocess import default_chain_for, default_cleaners
from prompts import (
    ENGINE_VARIABLES,
    ROLES,
    TaskKind,
    TemplateEnvironment,
    build_environment,
    check_rows,
    get_task_kind,
    load_examples,
    packaged_examples,
)

__all__ = [
    "check_items",
    "cleaner_chain",
    "examples_for",
    "load_checked_items",
    "open_refiner",
    "render_placeholder_step",
    "roles_used",
    "templates_for",
]


def templates_for(config: RunConfig) -> tuple[TaskKind, TemplateEnvironment]:
    """The task kind and a fresh template environment (user folders first, then packaged)."""
    kind = get_task_kind(config.task)
    env = build_environment(config.template_dirs, max_output_chars=config.max_prompt_chars)
    return kind, env


def examples_for(config: RunConfig, kind: TaskKind) -> list[dict[str, Any]]:
    """The few-shot demos: the configured file, else the task's packaged ones, else none.

    Each demo must carry the task's required input fields and ``output``.
    """
    path = config.examples_path or packaged_examples(kind.name)
    return load_examples(path, required=kind.required) if path else []


def load_checked_items(path: Path, config: RunConfig) -> list[Item]:
    """Read ``path`` and check it (see :func:`check_items`) before any request is sent.

    Under ``config.skip_invalid`` bad rows are left out: see :func:`flows.preflight.load_input`.
    """
    from flows.preflight import load_input  # preflight builds on check_items below

    return load_input(path, config).items


def roles_used(config: RunConfig, plan: LoopPlan) -> tuple[str, ...]:
    """The role templates a run renders: the steps', ``fix``, and critique and judge if used."""
    roles = (*ROLES, "fix")
    if config.critique.enabled:
        roles += ("critique",)
    if plan.judges:
        roles += ("judge",)
    return roles


def check_items(items: list[Item], config: RunConfig, path: Path) -> None:
    """Check every row against the variables its templates use, then render the first row.

    Raises MissingFieldsError (every missing field of every row at once), or InputError /
    TemplateError / ConfigError for bad demos, templates, cleaners, validators, rewards, tests
    or a missing sandbox: problems that would fail every item are found here, not after the
    requests are paid for.
    """
    config = with_task_defaults(config, items)
    plan = build_plan(config)
    kind, env = templates_for(config)
    roles = roles_used(config, plan)
    rows = ((item.line, input_fields(item, kind, config)) for item in items)
    check_rows(env, kind.name, rows, set(ENGINE_VARIABLES), path, roles)
    examples = examples_for(config, kind)
    cleaner_chain(config, kind)
    check_loop_inputs(plan, items, path)
    if items:
        for step in range(1, min(config.steps, 2) + 1):  # initial.j2, then refine.j2
            render_placeholder_step(config, kind, env, examples, items[0], step)
        for role in roles[len(ROLES) :]:
            step = min(config.steps, 2)
            render_placeholder_step(config, kind, env, examples, items[0], step, role)


def render_placeholder_step(
    config: RunConfig,
    kind: TaskKind,
    env: TemplateEnvironment,
    examples: list[dict[str, Any]],
    item: Item,
    step: int,
    role: str | None = None,
) -> list[dict[str, str]]:
    """The messages ``step`` would send for ``item``, earlier drafts shown as placeholders.

    ``role`` renders the ``fix`` (the latest draft with a placeholder problem), ``critique`` or
    ``judge`` template instead of the step's own.
    """
    shown = step if role in ("critique", "judge") else step - 1
    drafts = [Draft(step=t, text=f"[draft of step {t}]") for t in range(1, shown + 1)]
    if role == "fix" and drafts:
        drafts[-1].problems.append(f"[problems found in the draft of step {drafts[-1].step}]")
    variables = step_variables(config, input_fields(item, kind, config), drafts, examples, step)
    return env.render_messages(kind.name, step, variables, role=role)


def cleaner_chain(config: RunConfig, kind: TaskKind) -> Callable[[str], str]:
    """The configured post-processing chain, or the task's default one."""
    specs = config.postprocess or default_chain_for(kind.plain_text, config.max_output_chars)
    return default_cleaners().build_chain(specs)


@asynccontextmanager
async def open_refiner(config: RunConfig, items: list[Item]) -> AsyncIterator[Refiner]:
    """A Refiner with its client, cache, cleaners, checks and few-shot demos; closes the client
    after. ``items`` decide the task defaults (see :mod:`flows.task_defaults`)."""
    config = with_task_defaults(config, items)
    plan = build_plan(config)
    kind, env = templates_for(config)
    cache = RequestCache(config.cache_dir) if config.use_cache else None
    if cache is not None:
        cache.check_writable()
    if config.endpoint.base_url:  # nothing listening there: one error now, not one per item
        await asyncio.to_thread(
            probe_endpoint, config.endpoint.base_url, config.retry.connect_timeout_s
        )
    client = ChatClient(
        config.endpoint,
        config.retry,
        await api_key_for(config) if config.endpoint.send_api_key else None,
        max_in_flight=config.concurrency,
    )
    calls = ModelCalls(client, cache, config.endpoint, logprobs=plan.needs_logprobs)
    try:
        clean = cleaner_chain(config, kind)
        yield Refiner(config, kind, env, calls, clean, examples_for(config, kind), plan)
    finally:
        await client.aclose()
