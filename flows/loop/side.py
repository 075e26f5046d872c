"""The side requests about a draft: the LLM judge's score and the Self-Refine critique.

Each is one extra request, rendered from ``<task>/judge.j2`` or ``<task>/critique.j2`` about the
latest draft, counted and cached like a step's. Neither may cost the item its draft: a judge
answer that did not end normally or a judge request that failed (refused, no text, an error in
a 200 after the retries) leaves that reward unavailable for the draft, and such a critique is no
verdict: it neither ends the item nor feeds the next step. Each is noted in the draft's
``reward_notes`` naming the request and why. Only a :class:`~refine.errors.FatalEndpointError`
(401/403/404), which no later request can get past, stops the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flows.config.loop import CritiqueConfig
from flows.data.records import Draft
from flows.llm.calls import ModelCalls, side_request
from flows.llm.client import Completion
from flows.llm.finish import finish_problem
from flows.loop.plan import Judge
from flows.loop.render import StepRenderer
from postprocess.rewards import RewardUnavailable, parse_judge_score
from refine.errors import EndpointError, FatalEndpointError

__all__ = ["SideRequests"]


class SideRequests:
    """Asks the judge and the critic about a draft, through the run's calls and templates."""

    def __init__(self, renderer: StepRenderer, calls: ModelCalls, critique: CritiqueConfig) -> None:
        self.renderer = renderer
        self.calls = calls
        self.stop_phrase = critique.stop_phrase

    async def judge(
        self, fields: dict[str, Any], drafts: Sequence[Draft], draft: Draft, judge: Judge
    ) -> None:
        """Put the judge's score of ``draft`` in its rewards, or a note saying why there is none."""
        completion = await self._ask(fields, drafts, draft, "judge")
        if isinstance(completion, str):
            draft.reward_notes.append(f"reward {judge.label} unavailable: {completion}")
            return
        if (ended := finish_problem(completion.finish_reason)) is not None:
            # a score in a cut or filtered answer may be a fragment ("Score: 1" of "10/10")
            draft.reward_notes.append(f"reward {judge.label} unavailable: {ended}")
            return
        try:
            score = parse_judge_score(completion.content, judge.scale_max)
            draft.rewards[judge.label] = round(score, 6)
        except RewardUnavailable as exc:
            draft.reward_notes.append(f"reward {judge.label} unavailable: {exc.reason}")

    async def critique(self, fields: dict[str, Any], drafts: Sequence[Draft], draft: Draft) -> bool:
        """Self-Refine: set ``draft.critique`` (the next step's ``feedback``); True when the
        critic is satisfied (its answer holds the stop phrase) and the item ends."""
        completion = await self._ask(fields, drafts, draft, "critique")
        if isinstance(completion, str):
            draft.reward_notes.append(f"critique unavailable, so no verdict: {completion}")
            return False
        if finish_problem(completion.finish_reason) is not None:
            # A cut or filtered critique is no verdict: it neither ends the item (its stop
            # phrase may be the start of "NO ISSUES except ...") nor feeds the next step; the
            # request stays in the draft's side_requests with its text.
            return False
        draft.critique = completion.content.strip()
        return self.stop_phrase.casefold() in draft.critique.casefold()

    async def _ask(
        self, fields: dict[str, Any], drafts: Sequence[Draft], draft: Draft, role: str
    ) -> Completion | str:
        """Render ``<task>/<role>.j2`` about ``draft``, ask, and record the request in the
        draft's ``side_requests``; a request that failed is the note saying so, unrecorded."""
        messages = self.renderer.messages(fields, drafts, draft.step, role)
        try:
            completion, cached = await self.calls.complete(messages, draft.step, role=role)
        except FatalEndpointError:
            raise  # 401/403/404: no later request gets past it either
        except EndpointError as exc:
            return f"the {role} request failed: {exc}"
        draft.side_requests.append(side_request(role, completion, cached))
        return completion
