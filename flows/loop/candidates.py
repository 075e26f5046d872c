"""Best-of-N inside a step: draw N candidates, check each like a draft, keep the best.

A step with ``samples`` = N > 1 draws N answers to the same prompt (DSPy's ``BestOfN``,
AlphaCode-style filtering by tests): N requests with distinct seeds, drawn at once, or the N
choices of one request where the endpoint honours ``n`` (``[endpoint] supports_n``), or, with
``stop_sampling_when_valid``, one request at a time until a candidate passes every validator
(test-filtered sampling when the validators run visible tests). Each candidate is cleaned,
validated and scored as any draft; :func:`choose_candidate` picks the step's draft. Which buys
more quality per token, sampling or repair, is the question of Olausson et al., "Is Self-Repair
a Silver Bullet for Code Generation?" (ICLR 2024); ``refine eval``'s frontier answers it for a
user's own data.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from flows.data.records import Candidate, Draft
from flows.llm.calls import Choice, ModelCalls
from flows.llm.client import Completion
from refine.errors import ConfigError, EndpointError, FatalEndpointError, RefineError

__all__ = ["BestOfN", "Drafted", "choose_candidate"]


@dataclass
class Drafted:
    """A step's answer made a draft (cleaned, with the answer's own problems) and what its
    checks need beside it: the answer's token log-probabilities, and whether validators and
    rewards look at it at all (not when a filter rejected it)."""

    draft: Draft
    logprobs: tuple[float, ...] | None = None
    judged: bool = True


MakeDraft = Callable[[Completion, bool, int], Drafted]
"""Builds a draft of step ``step`` from an answer and whether it came from the cache."""
CheckDraft = Callable[[Sequence[Draft], Drafted], Awaitable[None]]
"""Validates and scores a draft, given the item's drafts before it (its history)."""


def choose_candidate(candidates: Sequence[Draft], primary: str | None) -> tuple[int, str]:
    """The winner's position in ``candidates`` and why it won.

    The rule, in order: a candidate without problems beats one with problems; then the higher
    primary reward (a usable candidate without a score ranks below every scored one); then the
    later index, as ``select = "best"`` prefers the later step.

    Raises:
        ValueError: ``candidates`` is empty.
    """
    if not candidates:
        raise ValueError("a best-of-N step needs at least one candidate")

    def score(draft: Draft) -> float:
        if primary is None or primary not in draft.rewards:
            return -math.inf
        return draft.rewards[primary]

    ranked = max(
        range(len(candidates)), key=lambda i: (candidates[i].usable, score(candidates[i]), i)
    )
    winner = candidates[ranked]
    best = score(winner)
    usable = [i for i, d in enumerate(candidates) if d.usable]
    group = usable or list(range(len(candidates)))  # what the winner was chosen among
    tied = [i for i in group if i != ranked and score(candidates[i]) == best]
    ties = (
        f"; tied with candidate{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))}: "
        "the latest wins"
        if tied and best != -math.inf
        else ""
    )
    if len(candidates) == 1:
        state = "has no problems" if usable else "is not usable"
        return ranked, f"the one candidate drawn {state}"
    of = f"{len(candidates)} candidates"
    if not usable:
        if best == -math.inf:
            return ranked, f"none of the {of} is usable: the latest is kept"
        return ranked, (
            f"none of the {of} is usable: the one with the highest {primary} ({best:g}) is "
            f"kept{ties}"
        )
    if len(usable) == 1:
        return ranked, f"the only one of the {of} without problems"
    if best == -math.inf:
        return ranked, (
            f"{len(usable)} of the {of} have no problems and none has a {primary or 'primary'} "
            "score: the latest of them"
        )
    return ranked, f"the highest {primary} ({best:g}) of the {len(usable)} usable of the {of}{ties}"


def _candidate(draft: Draft, index: int, seed: int | None) -> Candidate:
    return Candidate(
        index=index,
        text=draft.text,
        seed=seed,
        finish_reason=draft.finish_reason,
        usage=draft.usage,
        latency_s=draft.latency_s,
        cached=draft.cached,
        attempts=draft.attempts,
        problems=list(draft.problems),
        rewards=dict(draft.rewards),
        reward_notes=list(draft.reward_notes),
        side_requests=list(draft.side_requests),
    )


class BestOfN:
    """Draws a step's N candidates through the run's calls and returns the winner as its draft.

    ``make`` is the refiner's own (a candidate is made exactly as a draft), ``keep`` its rule
    for what may be cached, ``spent`` says whether the item's or the run's token budget is
    spent by the given drafts (checked between candidates drawn one at a time).
    """

    def __init__(
        self,
        calls: ModelCalls,
        make: MakeDraft,
        keep: Callable[[str], bool],
        spent: Callable[[Sequence[Draft]], bool],
        *,
        one_at_a_time: bool,
        use_n: bool,
    ) -> None:
        self.calls = calls
        self.make = make
        self.keep = keep
        self.spent = spent
        self.one_at_a_time = one_at_a_time
        self.use_n = use_n and not one_at_a_time  # one at a time is one request each

    async def draw(
        self,
        history: Sequence[Draft],
        messages: list[dict[str, str]],
        step: int,
        n: int,
        primary: str | None,
        check: CheckDraft,
    ) -> tuple[Draft, RefineError | None]:
        """The step's draft (the winner, carrying every candidate) and the first error a
        candidate's ``check`` raised (the caller fails the item with it, the draft kept).

        A candidate whose request failed is kept with the failure as its problem; when every
        candidate's request failed, the first failure is the error. A 401/403/404 or a
        configuration error is raised. The draft's ``latency_s`` is its requests' time on the
        wire: the longest of candidates drawn at once, their sum when drawn one at a time.
        """
        drawn: list[tuple[Drafted, int | None]] = []
        failures: dict[int, EndpointError] = {}
        error: RefineError | None = None
        shared: set[int] = set()
        stopped = ""
        if self.one_at_a_time:
            for index in range(n):
                if drawn and self.spent([*history, *(d.draft for d, _ in drawn)]):
                    stopped = "the token budget was spent"
                    break
                found = await self._one(messages, step, index, failures)
                drawn.append(found)
                if index not in failures:
                    error = await _checked(check, history, found[0])
                if error is not None:
                    stopped = "its checks failed"  # the item fails: no more are paid for
                    break
                if found[0].draft.usable:
                    stopped = "it passed every validator"
                    break
        else:
            choices: list[Choice | None] = [None] * n
            if self.use_n:
                choices = await self._choices(messages, step, n, failures)
                shared = {i for i, c in enumerate(choices) if c is not None and c.shared}
            if failures:  # the one request with n failed: this step asks nothing more
                drawn = [(_failed(step, failures[0]), self.calls.endpoint.seed)]
                stopped = "the one request with n failed"
            else:  # the rest one request each, at once (all N without n)
                missing = [i for i, c in enumerate(choices) if c is None]
                fresh = await asyncio.gather(
                    *(self._one(messages, step, i, failures) for i in missing)
                )
                by_index = dict(zip(missing, fresh, strict=True))
                for index, choice in enumerate(choices):
                    if choice is not None:
                        made = self.make(choice.completion, choice.cached, step)
                        by_index[index] = (made, choice.seed)
                drawn = [by_index[i] for i in sorted(by_index)]
            errors = await asyncio.gather(
                *(
                    _checked(check, history, d)
                    for i, (d, _) in enumerate(drawn)
                    if i not in failures
                )
            )
            error = next((e for e in errors if e is not None), None)
        if failures and len(failures) == len(drawn):
            error = failures[min(failures)]  # no answer at all: the item fails, draft kept
        drafts = [d.draft for d, _ in drawn]
        winner, why = choose_candidate(drafts, primary)
        if len(drawn) < n:
            why += f"; {len(drawn)} of up to {n} drawn, then stopped as {stopped}"
        draft = drafts[winner].model_copy(deep=True)
        draft.candidates = [_candidate(d.draft, i, seed) for i, (d, seed) in enumerate(drawn)]
        for index in shared:
            draft.candidates[index].shared_request = True
        draft.candidate = winner
        draft.choice = why
        wire = [d.latency_s for d in drafts]  # drawn at once: the longest; else one after another
        draft.latency_s = round(sum(wire) if self.one_at_a_time else max(wire), 4)
        return draft, error

    async def _choices(
        self,
        messages: list[dict[str, str]],
        step: int,
        n: int,
        failures: dict[int, EndpointError],
    ) -> list[Choice | None]:
        """The candidates the cache or one request with ``n`` gives (None for the others);
        a failed request is candidate 0's failure, kept in the record as its problem."""
        try:
            return await self.calls.complete_choices(messages, step, n, keep=self.keep)
        except FatalEndpointError:
            raise
        except EndpointError as exc:
            failures[0] = exc
            return [None] * n

    async def _one(
        self,
        messages: list[dict[str, str]],
        step: int,
        index: int,
        failures: dict[int, EndpointError],
    ) -> tuple[Drafted, int | None]:
        """Candidate ``index``: its own request with its own seed and cache key."""
        seed = self.calls.sample_seed(index)
        try:
            answer, cached = await self.calls.complete(
                messages, step, sample=index, seed=seed, keep=self.keep
            )
        except FatalEndpointError:
            raise
        except EndpointError as exc:
            failures[index] = exc
            return _failed(step, exc), seed
        return self.make(answer, cached, step), seed


def _failed(step: int, error: EndpointError) -> Drafted:
    """A candidate whose request failed: no answer, the failure as its problem."""
    failed = Draft(step=step, text="", problems=[f"the request failed: {error}"])
    return Drafted(failed, judged=False)


async def _checked(
    check: CheckDraft, history: Sequence[Draft], drafted: Drafted
) -> RefineError | None:
    """Check a candidate; a check that fails is its problem, and the error is returned."""
    try:
        await check(history, drafted)
    except (FatalEndpointError, ConfigError):
        raise
    except RefineError as exc:
        drafted.draft.problems.append(f"the checks of this draft failed: {exc}")
        return exc
    return None
