"""The refinement algorithm for one item, one step at a time; no Prefect here.

``y_0 = x``; at step t: render the prompt from x and the last k drafts, call the model (or
read the cache), post-process, record the draft with its problems, and decide whether to go on.
The Prefect tasks in :mod:`flows.batch` call :meth:`Refiner.step` for a chunk of items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flows.cache import RequestCache, request_key
from flows.client import ChatClient, Completion
from flows.records import Draft, Item, StopReason, Trajectory, Usage
from flows.settings import RunConfig
from prompts import TaskKind, TemplateEnvironment, build_variables
from refine.errors import EndpointError, FatalEndpointError, TemplateError

__all__ = ["ItemRun", "Refiner", "input_fields", "step_variables"]


def input_fields(item: Item, kind: TaskKind, config: RunConfig) -> dict[str, Any]:
    """The row's fields with the task's optional fields and configured defaults filled in.

    A null or empty value counts as absent for a field that has a default (an empty CSV cell
    must not turn "into French" into "into ").
    """
    defaults: dict[str, Any] = dict(kind.optional)
    if kind.name == "translate":
        defaults.update(source_lang=config.source_lang, target_lang=config.target_lang)
    fields = dict(defaults)
    fields.update(
        {k: v for k, v in item.fields.items() if k not in defaults or v not in (None, "")}
    )
    return fields


@dataclass
class ItemRun:
    """The state of one item in flight: its drafts so far and, once done, why it stopped."""

    item: Item
    fields: dict[str, Any]
    drafts: list[Draft] = field(default_factory=list)
    stop_reason: StopReason | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def trajectory(self) -> Trajectory:
        """The output record: the last usable draft, or a failure saying why there is none."""
        if self.error is not None:
            return Trajectory(
                id=self.item.id,
                status="failed",
                drafts=self.drafts,
                stop_reason=self.stop_reason,
                error=self.error,
            )
        usable = [d for d in self.drafts if not d.problems]
        if not usable:
            last = self.drafts[-1].problems if self.drafts else ["no step ran"]
            return Trajectory(
                id=self.item.id,
                status="failed",
                drafts=self.drafts,
                stop_reason=self.stop_reason,
                error="no usable draft: " + "; ".join(last),
            )
        return Trajectory(
            id=self.item.id,
            status="ok",
            output=usable[-1].text,
            drafts=self.drafts,
            stop_reason=self.stop_reason,
        )


def step_variables(
    config: RunConfig,
    fields: dict[str, Any],
    drafts: list[Draft],
    examples: list[dict[str, Any]],
    step: int,
) -> dict[str, object]:
    """The template variables for ``step``: only the last k drafts, so prompts don't grow with T."""
    recent = drafts[-config.history :]
    return build_variables(
        config.task,
        step,
        config.steps,
        fields,
        examples=examples,
        drafts=[d.text for d in recent],
        errors=recent[-1].problems if recent else (),
    )


def draft_problems(completion: Completion, text: str) -> list[str]:
    """What makes an answer unusable as it stands; the next step's prompt sees these."""
    problems = []
    if not completion.content.strip():
        problems.append("the model returned an empty answer")
    elif not text:
        problems.append("the answer is empty after post-processing")
    if completion.finish_reason == "length":
        problems.append("the answer was cut off at max_tokens (finish_reason=length)")
    return problems


class Refiner:
    """Runs steps of the algorithm for items, sharing one client, cache and template set."""

    def __init__(
        self,
        config: RunConfig,
        kind: TaskKind,
        templates: TemplateEnvironment,
        client: ChatClient,
        cache: RequestCache | None,
        clean: Callable[[str], str],
        examples: list[dict[str, Any]],
    ) -> None:
        self.config = config
        self.kind = kind
        self.templates = templates
        self.client = client
        self.cache = cache
        self.clean = clean
        self.examples = examples
        self.cache_hits = 0

    def start(self, item: Item) -> ItemRun:
        """A fresh run for ``item``."""
        return ItemRun(item=item, fields=input_fields(item, self.kind, self.config))

    async def step(self, run: ItemRun, step: int) -> None:
        """Advance ``run`` by one step; endpoint failures mark the item failed, fatal ones raise."""
        try:
            variables = step_variables(self.config, run.fields, run.drafts, self.examples, step)
            messages = self.templates.render_messages(self.kind.name, step, variables)
            completion, cached = await self._complete(messages, step)
        except FatalEndpointError:
            raise
        except (EndpointError, TemplateError) as exc:
            run.error = f"step {step}: {exc}"
            run.stop_reason = "error"
            return
        text = self.clean(completion.content)
        draft = Draft(
            step=step,
            text=text,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            latency_s=round(completion.latency_s, 4),
            cached=cached,
            attempts=completion.attempts,
            problems=draft_problems(completion, text),
        )
        previous = run.drafts[-1].text if run.drafts else None
        run.drafts.append(draft)
        if previous is not None and text == previous:
            run.stop_reason = "converged"
        elif step >= self.config.steps:
            run.stop_reason = "max_steps"

    async def _complete(self, messages: list[dict[str, str]], step: int) -> tuple[Completion, bool]:
        endpoint = self.config.endpoint
        key = request_key(
            {
                "model": endpoint.model,
                "messages": messages,
                "sampling": endpoint.sampling(),
                "extra_body": endpoint.extra_body,
                "step": step,
                "sample": 0,
            }
        )
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.cache_hits += 1
            return (
                Completion(
                    content=str(hit.get("content") or ""),
                    finish_reason=hit.get("finish_reason"),
                    usage=Usage.model_validate(hit.get("usage") or {}),
                    latency_s=0.0,
                    attempts=0,
                ),
                True,
            )
        completion = await self.client.complete(messages)
        if self.cache is not None:
            self.cache.put(
                key,
                {
                    "content": completion.content,
                    "finish_reason": completion.finish_reason,
                    "usage": completion.usage.model_dump(),
                },
            )
        return completion, False
