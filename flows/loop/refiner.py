"""The refinement algorithm for one item, one step at a time; no Prefect here.

``y_0 = x``; at step t: render the prompt from x and the last k drafts (the task's ``fix``
template when the latest draft has problems), call the model (or read the cache), clean the
answer, validate it, score it, optionally have the model critique it (the judge's and the
critic's requests: :mod:`flows.loop.side`), and decide whether to go on
(:mod:`flows.loop.stopping`). The Prefect tasks in :mod:`flows.batch` call
:meth:`Refiner.step` for a chunk of items.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.config.run import RunConfig
from flows.data.records import Draft, Item, StopReason, Trajectory
from flows.llm.calls import ModelCalls, side_request
from flows.llm.client import Completion
from flows.llm.finish import finish_problem
from flows.loop.candidates import BestOfN, Drafted
from flows.loop.checks import Assessor
from flows.loop.empty_guard import EmptyAnswerGuard
from flows.loop.plan import LoopPlan
from flows.loop.render import StepRenderer
from flows.loop.select import select_draft, total_reward
from flows.loop.side import SideRequests
from flows.loop.stopping import (
    StopOnTokenBudget,
    StopState,
    repeats_a_wrong_draft,
    stop_rules,
)
from postprocess.filters import DraftRejected
from postprocess.rewards import RewardDraft
from prompts.values import visible_text
from refine.errors import ConfigError, FatalEndpointError, RefineError

__all__ = ["CleanerFailed", "ItemRun", "Refiner"]


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

    @property
    def needs_fix(self) -> bool:
        """Whether the next step is a fix: the latest draft has problems."""
        return bool(self.drafts) and not self.drafts[-1].usable

    def row(self) -> dict[str, Any]:
        """What validators and rewards read: the fields plus the hidden ``id`` and ``reference``."""
        return {**self.fields, "id": self.item.id, "reference": self.item.reference}

    def trajectory(self, select: str = "last", primary: str | None = None) -> Trajectory:
        """The output record: the selected draft, or a failure saying why there is none.

        On an error the last usable draft is kept as the output: nothing earlier is lost.
        """
        chosen = select_draft(self.drafts, "best" if select == "best" else "last", primary)
        error = self.error
        if error is None and chosen is None:
            ran = self.drafts[-1].problems if self.drafts else [f"no step ran ({self.stop_reason})"]
            error = "no usable draft: " + "; ".join(ran)
        return Trajectory(
            id=self.item.id,
            status="ok" if error is None else "failed",
            output=chosen.text if chosen else None,
            drafts=self.drafts,
            stop_reason=self.stop_reason,
            error=error,
            selected_step=chosen.step if chosen else None,
            reward=primary,
            total_reward=total_reward(self.drafts, primary),
        )


class CleanerFailed(RefineError):
    """A cleaner raised on one answer: this item fails, not the run."""


def draft_problems(completion: Completion, text: str) -> list[str]:
    """What makes an answer unusable as it stands; the next step's prompt sees these."""
    problems = []
    if not visible_text(completion.content):  # zero-width spaces or NULs are no answer either
        problems.append("the model returned an empty answer")
    elif not visible_text(text):
        problems.append("the answer is empty after post-processing")
    if (ended := finish_problem(completion.finish_reason)) is not None:
        problems.append(ended)  # a cut or filtered half-answer is never complete text
    return problems


class Refiner:
    """Runs steps of the algorithm for items, sharing one client, cache and template set."""

    def __init__(
        self,
        config: RunConfig,
        renderer: StepRenderer,
        calls: ModelCalls,
        clean: Callable[[str], str],
        plan: LoopPlan,
        empty_answer_limit: int = 0,
    ) -> None:
        """``empty_answer_limit``: see :class:`EmptyAnswerGuard` (0: no guard)."""
        self.config = config
        self.renderer = renderer
        self.calls = calls
        self.clean = clean
        self.plan = plan
        self.stop_rule = stop_rules(config.stop)  # the run's rules, composed once
        self.budget = StopOnTokenBudget(
            config.stop.max_tokens_per_item, config.stop.max_tokens_per_run
        )
        self.assess = Assessor(plan, config.sandbox.concurrency or os.cpu_count() or 1)
        self.empty_guard = EmptyAnswerGuard(empty_answer_limit)
        self.side = SideRequests(renderer, calls, config.critique)
        self.best_of_n = BestOfN(
            calls,
            self._made,
            self._worth_keeping,
            lambda drafts: self.budget.spent(drafts, self.calls.tokens),
            one_at_a_time=config.stop_sampling_when_valid,
            use_n=config.endpoint.supports_n,
        )

    def start(self, item: Item) -> ItemRun:
        """A fresh run for ``item``."""
        return ItemRun(item=item, fields=self.renderer.fields(item))

    def finish(self, run: ItemRun) -> Trajectory:
        """The output record of a finished run, selected as configured."""
        return run.trajectory(self.config.select, self.plan.primary)

    async def step(self, run: ItemRun, step: int) -> None:
        """Advance ``run`` by one step: a ``fix`` step when its latest draft has problems.

        An endpoint failure, a template that fails on this row, a cleaner, validator or reward
        that fails on this answer marks the item failed. What no item can get past (a
        401/403/404, a broken configuration, no sandbox) raises, and the run stops.
        """
        if self.budget.spent(run.drafts, self.calls.tokens):
            run.stop_reason = "token_budget"  # spent by other items since this one's last step
            return
        try:
            draft = await self._draft(run, step, fix=run.needs_fix)
            run.stop_reason = self.stop_rule(
                StopState(
                    run.drafts,
                    max_steps=self.config.steps,
                    primary=self.plan.primary,
                    validated=bool(self.plan.validators),
                    run_tokens=self.calls.tokens,
                )
            )
            if run.stop_reason is None and self.config.critique.enabled and draft.usable:
                # Self-Refine: the critique becomes the next step's feedback, or ends the item
                satisfied = await self.side.critique(run.fields, run.drafts, draft)
                run.stop_reason = "critic_satisfied" if satisfied else self._budget_stop(run)
        except (FatalEndpointError, ConfigError):
            raise
        except RefineError as exc:  # endpoint, template, cleaner, validator, reward, tests
            run.error = f"step {step}: {exc}"
            run.stop_reason = "error"

    async def _draft(self, run: ItemRun, step: int, *, fix: bool) -> Draft:
        """Ask for, clean, validate and score this step's draft, and append it to ``run``."""
        messages = self.renderer.messages(run.fields, run.drafts, step, "fix" if fix else None)
        samples = self.config.samples_at(step)
        if samples > 1:  # best-of-N: the winner of N candidates (flows.loop.candidates)
            draft, error = await self.best_of_n.draw(
                run.drafts,
                messages,
                step,
                samples,
                self.plan.primary,
                lambda history, drafted: self._check(run, history, drafted),
            )
            draft.kind = "fix" if fix else "draft"
            run.drafts.append(draft)
            if error is not None:
                raise error
            return draft
        completion, cached = await self.calls.complete(messages, step, keep=self._worth_keeping)
        drafted = self._made(completion, cached, step)
        temperature = self.config.stop.repeat_temperature
        if (
            fix
            and temperature is not None
            and repeats_a_wrong_draft(run.drafts, drafted.draft.text)
        ):
            # A small model copies the program it is shown: at temperature 0 in 19 of 25
            # HumanEval fix steps, and asked the same fix prompt again at 0.7 it still returned
            # the identical program in 13 of 16 items (issue 14). So the second sample is a fresh
            # answer to the initial request, which shows no earlier draft to copy: sampling
            # instead of repair (Olausson et al., ICLR 2024). ``sample=step`` gives every step's
            # fresh sample its own cache key and seed.
            repeat = side_request("repeat", completion, cached)
            fresh = self.renderer.messages(run.fields, [], 1)
            completion, cached = await self.calls.complete(
                fresh, step, sample=step, temperature=temperature, keep=self._worth_keeping
            )
            drafted = self._made(completion, cached, step)
            drafted.draft.side_requests.append(repeat)
        draft = drafted.draft
        draft.kind = "fix" if fix else "draft"
        history = list(run.drafts)
        run.drafts.append(draft)
        try:
            await self._check(run, history, drafted)
        except RefineError as exc:  # kept in the record, never taken as the output
            draft.problems.append(f"the checks of this draft failed: {exc}")
            raise
        return draft

    def _made(self, completion: Completion, cached: bool, step: int) -> Drafted:
        """A step's draft of ``completion``: cleaned, with the answer's own problems (empty,
        cut off, rejected by a filter); validators and rewards come in :meth:`_check`.
        Every step-1 answer (each best-of-N candidate too) is shown to the empty-answer guard,
        which raises ConfigError when the run's first answers are all empty."""
        if step == 1:
            self.empty_guard.observe(completion.content, self.config.endpoint.model)
        text, rejected = self._cleaned(completion.content)
        draft = Draft(
            step=step,
            text=text,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            latency_s=round(completion.latency_s, 4),
            cached=cached,
            attempts=completion.attempts,
            problems=draft_problems(completion, text) + ([rejected] if rejected else []),
        )
        return Drafted(draft, completion.token_logprobs, judged=rejected is None)

    async def _check(self, run: ItemRun, history: Sequence[Draft], drafted: Drafted) -> None:
        """Validators' problems and rewards of a draft that follows ``history``; a rejected or
        empty draft is neither."""
        draft = drafted.draft
        if not drafted.judged or not visible_text(draft.text):
            return
        found = await self.assess(
            run.row(), RewardDraft(draft.text, drafted.logprobs), validate=True, score=True
        )
        draft.problems.extend(found.problems)
        draft.reward_notes.extend(found.notes)
        for judge in self.plan.judges:
            await self.side.judge(run.fields, [*history, draft], draft, judge)
        scores = {**found.rewards, **draft.rewards}
        order = [r.label for r in self.plan.rewards]  # the primary reward first, as configured
        draft.rewards = {label: scores[label] for label in order if label in scores}

    def _budget_stop(self, run: ItemRun) -> StopReason | None:
        """``token_budget`` when the item's or the run's tokens are spent, else None."""
        return "token_budget" if self.budget.spent(run.drafts, self.calls.tokens) else None

    def _worth_keeping(self, content: str) -> bool:
        """Whether a step's answer may be cached: post-processing leaves some text of it.

        An answer that is only chatter or an empty fence is a bad moment of the model, like an
        empty one: replayed from the cache, it would fail its item again on every retry.
        """
        try:
            return bool(visible_text(self._cleaned(content)[0]))
        except RefineError:  # a cleaner that fails on it: asked again once the cleaner is fixed
            return False

    def _cleaned(self, content: str) -> tuple[str, str | None]:
        """The cleaned text, and the reason a filter rejected it (None: kept)."""
        try:
            return self._clean(content), None
        except DraftRejected as exc:
            return exc.text, exc.reason

    def _clean(self, content: str) -> str:
        try:
            return self.clean(content)
        except (ConfigError, DraftRejected):
            raise
        except Exception as exc:  # user cleaners are user code: this answer fails, not the run
            raise CleanerFailed(f"post-processing failed: {exc!r}") from exc
