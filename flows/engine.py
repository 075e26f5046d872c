"""The refinement algorithm for one item, one step at a time; no Prefect here.

``y_0 = x``; at step t: render the prompt from x and the last k drafts, call the model (or
read the cache), post-process, record the draft with its problems, and decide whether to go on.
The Prefect tasks in :mod:`flows.batch` call :meth:`Refiner.step` for a chunk of items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flows.cache import RequestCache, request_key
from flows.client import ChatClient, Completion
from flows.records import CachedAnswer, Draft, Item, StopReason, Trajectory
from flows.settings import RunConfig
from prompts import TaskKind, TemplateEnvironment, build_variables
from refine.errors import ConfigError, EndpointError, FatalEndpointError, TemplateError

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
        usable = [d for d in self.drafts if not d.problems]
        if self.error is not None:  # keep what earlier steps achieved: nothing is lost
            return Trajectory(
                id=self.item.id,
                status="failed",
                output=usable[-1].text if usable else None,
                drafts=self.drafts,
                stop_reason=self.stop_reason,
                error=self.error,
            )
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


class CleanerFailed(Exception):
    """A cleaner raised on one answer."""


def _same_usable_text(previous: Draft, draft: Draft) -> bool:
    """Converged: the same text twice, and nothing wrong with it (two empty answers are not)."""
    return not previous.problems and not draft.problems and previous.text == draft.text


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
        """Advance ``run`` by one step.

        An endpoint failure, a template that fails on this row or a cleaner that fails on this
        answer marks the item failed. What no item can get past (a 401/403/404, a broken
        cleaner configuration) raises, and the run stops.
        """
        try:
            variables = step_variables(self.config, run.fields, run.drafts, self.examples, step)
            messages = self.templates.render_messages(self.kind.name, step, variables)
            completion, cached = await self._complete(messages, step)
            text = self._clean(completion.content)
        except (FatalEndpointError, ConfigError):
            raise
        except (EndpointError, TemplateError, CleanerFailed) as exc:
            run.error = f"step {step}: {exc}"
            run.stop_reason = "error"
            return
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
        previous = run.drafts[-1] if run.drafts else None
        run.drafts.append(draft)
        if previous is not None and _same_usable_text(previous, draft):
            run.stop_reason = "converged"
        elif step >= self.config.steps:
            run.stop_reason = "max_steps"

    def _clean(self, content: str) -> str:
        try:
            return self.clean(content)
        except ConfigError:
            raise
        except Exception as exc:  # user cleaners are user code: this answer fails, not the run
            raise CleanerFailed(f"post-processing failed: {exc!r}") from exc

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
        if (hit := self._cached(key)) is not None:
            self.cache_hits += 1
            completion = Completion(
                content=hit.content,
                finish_reason=hit.finish_reason,
                usage=hit.usage,
                latency_s=0.0,
                attempts=0,
            )
            return completion, True
        completion = await self.client.complete(messages)
        if self.cache is not None:
            answer = CachedAnswer(
                content=completion.content,
                finish_reason=completion.finish_reason,
                usage=completion.usage,
            )
            self.cache.put(key, answer.model_dump())
        return completion, False

    def _cached(self, key: str) -> CachedAnswer | None:
        """The cached answer for ``key``; an entry of the wrong shape is a miss, never served."""
        raw = self.cache.get(key) if self.cache is not None else None
        if raw is None:
            return None
        try:
            return CachedAnswer.model_validate(raw)
        except ValidationError:
            return None
