"""Stop rules and token budgets (flows.loop.stopping) as plain functions over hand-built drafts."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from flows.config.loop import StopConfig
from flows.data.records import Draft, SideRequest, StopReason, Usage
from flows.loop.stopping import (
    StopAny,
    StopAtMaxSteps,
    StopAtRewardThreshold,
    StopOnPlateau,
    StopOnTokenBudget,
    StopState,
    StopWhenStuck,
    StopWhenUnchanged,
    StopWhenValid,
    item_tokens,
    stop_reason,
    stop_rules,
)


def draft(
    step: int,
    score: float | None = None,
    *,
    bad: bool = False,
    text: str | None = None,
    tokens: int = 0,
) -> Draft:
    """A draft of ``step`` with text "text <step>", primary reward "r" = ``score``."""
    return Draft(
        step=step,
        text=f"text {step}" if text is None else text,
        problems=["bad"] if bad else [],
        rewards={} if score is None else {"r": score},
        usage=Usage(prompt_tokens=tokens - tokens // 2, completion_tokens=tokens // 2),
    )


def bad(step: int, score: float | None = None, text: str | None = None) -> Draft:
    """A draft with a problem: never the output, never "valid", never "converged"."""
    return draft(step, score, bad=True, text=text)


SAME = [draft(1, text="x"), draft(2, text="x")]
CLIMBING = [draft(1, 0.1), draft(2, 0.5), draft(3, 0.4)]
FLAT = [*CLIMBING, draft(4, 0.5)]
GAPPY = [draft(1, 0.5), draft(2), draft(3, 0.4), draft(4, 0.3)]
UP_THEN_UNSCORED = [draft(1, 0.1), draft(2, 0.5), draft(3)]
SPENT = [draft(1, tokens=60), draft(2, tokens=40)]
HIGH_TWICE = [draft(1, 0.95, text="x"), draft(2, 0.95, text="x")]
LOW_TWICE = [draft(1, 0.5), draft(2, 0.4, text="x"), draft(3, 0.4, text="x")]
VALID: dict[str, Any] = {"stop_when_valid": True}
AT_90: dict[str, Any] = {"reward_threshold": 0.9}
FLAT_2: dict[str, Any] = {"plateau_steps": 2}
ITEM_100: dict[str, Any] = {"max_tokens_per_item": 100}
RUN_500: dict[str, Any] = {"max_tokens_per_run": 500}
RUN_1: dict[str, Any] = {"max_tokens_per_run": 1}

# (case, drafts, StopConfig fields, stop_reason keywords, expected); the keywords default to
# max_steps=5, primary="r", validated=True, run_tokens=0, and StopConfig to its own defaults.
CASES: list[tuple[str, list[Draft], dict[str, Any], dict[str, Any], StopReason | None]] = [
    ("nothing holds", [draft(1, 0.5)], {}, {}, None),
    ("valid", [draft(1)], VALID, {}, "valid"),
    ("valid: not with problems", [bad(1)], VALID, {}, None),
    ("valid: not without validators", [draft(1)], VALID, {"validated": False}, None),
    ("valid: not unless asked", [draft(1)], {"stop_when_valid": None}, {}, None),
    ("threshold reached", [draft(1, 0.9)], AT_90, {}, "reward_threshold"),
    ("threshold: below", [draft(1, 0.89)], AT_90, {}, None),
    ("threshold: not a bad draft", [bad(1, 0.95)], AT_90, {}, None),
    ("threshold: unscored draft", [draft(1)], AT_90, {}, None),
    ("threshold: no primary", [draft(1, 0.95)], AT_90, {"primary": None}, None),
    ("threshold: only earlier", [draft(1, 0.95), draft(2, 0.1)], AT_90, {}, None),
    ("converged", SAME, {}, {}, "converged"),
    ("converged: off", SAME, {"stop_when_unchanged": False}, {}, None),
    ("converged: first step", SAME[:1], {}, {}, None),
    ("converged: changed text", [draft(1), draft(2)], {}, {}, None),
    ("converged: not two bad drafts", [bad(1, text="x"), bad(2, text="x")], {}, {}, None),
    ("converged: not after a bad draft", [bad(1, text="x"), draft(2, text="x")], {}, {}, None),
    ("converged: not into a bad draft", [draft(1, text="x"), bad(2, text="x")], {}, {}, None),
    ("plateau: still improving", CLIMBING, FLAT_2, {}, None),
    ("plateau", FLAT, FLAT_2, {}, "plateau"),
    ("plateau: improved in window", [*CLIMBING, draft(4, 0.51)], FLAT_2, {}, None),
    ("plateau: too few scores", [draft(1, 0.5), draft(2, 0.5)], FLAT_2, {}, None),
    ("plateau: skips unscored", GAPPY, FLAT_2, {}, "plateau"),
    ("plateau: unscored is no step", UP_THEN_UNSCORED, {"plateau_steps": 1}, {}, None),
    ("plateau: no primary", FLAT, FLAT_2, {"primary": None}, None),
    ("item budget spent", [draft(1, tokens=100)], ITEM_100, {}, "token_budget"),
    ("item budget: one token left", [draft(1, tokens=99)], ITEM_100, {}, None),
    ("item budget: over steps", SPENT, ITEM_100, {}, "token_budget"),
    ("run budget spent", [draft(1)], RUN_500, {"run_tokens": 500}, "token_budget"),
    ("run budget: one token left", [draft(1)], RUN_500, {"run_tokens": 499}, None),
    ("no budgets", [draft(1, tokens=10**9)], {}, {"run_tokens": 10**9}, None),
    ("max_steps", [draft(3)], {}, {"max_steps": 3}, "max_steps"),
    ("max_steps: one to go", [draft(2)], {}, {"max_steps": 3}, None),
    # precedence: each reason over the next in the documented order, and the first over the last
    ("valid > threshold", [draft(1, 0.95)], VALID | AT_90, {}, "valid"),
    ("threshold > converged", HIGH_TWICE, AT_90, {}, "reward_threshold"),
    ("converged > plateau", LOW_TWICE, {"plateau_steps": 1}, {}, "converged"),
    ("plateau > budget", FLAT, FLAT_2 | RUN_1, {"run_tokens": 1}, "plateau"),
    ("budget > max_steps", [draft(3)], RUN_1, {"run_tokens": 1, "max_steps": 3}, "token_budget"),
    ("valid > max_steps", [draft(3)], VALID, {"max_steps": 3}, "valid"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("drafts", "config", "given", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_stop_reason(
    drafts: list[Draft], config: dict[str, Any], given: dict[str, Any], expected: StopReason | None
) -> None:
    keywords: dict[str, Any] = {"max_steps": 5, "primary": "r", "validated": True, "run_tokens": 0}
    keywords |= given
    assert stop_reason(drafts, stop=StopConfig(**config), **keywords) == expected


def test_stop_rules_follow_the_documented_order() -> None:
    everything = StopConfig(
        stop_when_valid=True,
        reward_threshold=0.9,
        stop_when_unchanged=True,
        plateau_steps=2,
        max_tokens_per_item=100,
        max_tokens_per_run=1000,
    )
    assert stop_rules(everything) == StopAny(
        (
            StopWhenValid(),
            StopAtRewardThreshold(0.9),
            StopWhenUnchanged(),
            StopWhenStuck(),
            StopOnPlateau(2),
            StopOnTokenBudget(100, 1000),
            StopAtMaxSteps(),
        )
    )
    quiet = StopConfig(stop_when_unchanged=False, max_tokens_per_run=10)
    assert stop_rules(quiet) == StopAny(
        (StopWhenStuck(), StopOnTokenBudget(None, 10), StopAtMaxSteps())
    )


BOTH: dict[str, Any] = {"max_tokens_per_item": 10, "max_tokens_per_run": 100}

# (case, StopConfig fields, item drafts, run_tokens, spent?)
BUDGETS: list[tuple[str, dict[str, Any], list[Draft], int, bool]] = [
    ("no budgets", {}, [draft(1, tokens=10**9)], 10**9, False),
    ("item: reached", ITEM_100, [draft(1, tokens=100)], 0, True),
    ("item: below", ITEM_100, [draft(1, tokens=99)], 10**9, False),
    ("item: summed over steps", ITEM_100, [draft(1, tokens=50), draft(2, tokens=50)], 0, True),
    ("run: reached", RUN_500, [draft(1)], 500, True),
    ("run: below", RUN_500, [draft(1, tokens=10**9)], 499, False),
    ("both: the item's spent", BOTH, [draft(1, tokens=10)], 0, True),
    ("both: the run's spent", BOTH, [draft(1)], 100, True),
    ("both: neither", BOTH, [draft(1, tokens=9)], 99, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "drafts", "run_tokens", "spent"),
    [case[1:] for case in BUDGETS],
    ids=[case[0] for case in BUDGETS],
)
def test_token_budget_spent(
    config: dict[str, Any], drafts: list[Draft], run_tokens: int, spent: bool
) -> None:
    stop = StopConfig(**config)
    budget = StopOnTokenBudget(stop.max_tokens_per_item, stop.max_tokens_per_run)
    assert budget.spent(drafts, run_tokens) is spent


def test_item_tokens_count_side_requests_but_not_cached_tokens() -> None:
    critique = SideRequest(
        role="critique", text="ok", usage=Usage(prompt_tokens=7, completion_tokens=3)
    )
    step = Usage(prompt_tokens=20, completion_tokens=5, cached_tokens=1000)
    second = draft(2).model_copy(update={"usage": step, "side_requests": [critique]})
    drafts = [draft(1, tokens=10), second]
    assert item_tokens(drafts) == 10 + 25 + 10
    assert StopOnTokenBudget(per_item=45).spent(drafts, 0)
    assert not StopOnTokenBudget(per_item=46).spent(drafts, 0)


def test_usage_tokens_are_not_written_to_records() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=4, cached_tokens=2)
    assert usage.tokens == 7
    assert usage.model_dump() == {"prompt_tokens": 3, "completion_tokens": 4, "cached_tokens": 2}
    assert Draft(step=1, text="t", usage=usage).model_dump()["usage"] == usage.model_dump()


def state(drafts: list[Draft], **given: Any) -> StopState:
    fields: dict[str, Any] = {"max_steps": 5, "primary": "r", "validated": True, "run_tokens": 0}
    return StopState(drafts, **(fields | given))


def critic(state: StopState) -> StopReason | None:
    """A plain function as a rule: stops when the latest text says "done"."""
    return "critic_satisfied" if state.draft.text == "done" else None


DONE_AT_5 = state([draft(5, text="done")])
DONE_AT_1 = state([draft(1, text="done")])

# (case, rule, state, expected)
COMPOSED: list[tuple[str, Any, StopState, StopReason | None]] = [
    ("first of two that hold", StopWhenValid() | StopAtMaxSteps(), state([draft(5)]), "valid"),
    ("order is precedence", StopAtMaxSteps() | StopWhenValid(), state([draft(5)]), "max_steps"),
    ("the one that holds", StopWhenValid() | StopAtMaxSteps(), state([bad(5)]), "max_steps"),
    ("none holds", StopWhenValid() | StopAtMaxSteps(), state([bad(1)]), None),
    ("rule | function", StopAtMaxSteps() | critic, DONE_AT_5, "max_steps"),
    ("function | rule", critic | StopAtMaxSteps(), DONE_AT_5, "critic_satisfied"),
    ("function does not hold", critic | StopAtMaxSteps(), state([draft(5)]), "max_steps"),
    ("function alone holds", StopAtMaxSteps() | critic, DONE_AT_1, "critic_satisfied"),
    ("three in a row", StopOnPlateau(1) | critic | StopAtMaxSteps(), state(FLAT), "plateau"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "given", "expected"),
    [case[1:] for case in COMPOSED],
    ids=[case[0] for case in COMPOSED],
)
def test_rules_compose_with_or(rule: Any, given: StopState, expected: StopReason | None) -> None:
    assert rule(given) == expected


def test_composing_keeps_one_flat_list_in_order() -> None:
    valid, steps = StopWhenValid(), StopAtMaxSteps()
    assert (valid | critic | steps) == StopAny((valid, critic, steps))
    assert (critic | (valid | steps)) == StopAny((critic, valid, steps))
    assert (stop_rules(StopConfig()) | critic).rules[-1] is critic


def test_reading_the_rules_loads_no_http_client() -> None:
    """``refine eval`` and ``refine export`` only read files: the modules they share with the
    run must not pull in the model client's stack."""
    code = (
        "import sys; import flows.loop.stopping, flows.loop.select; "
        "import flows.export.formats, flows.eval.curves; "
        "print(sorted({'openai', 'httpx2', 'tenacity', 'flows.llm.calls'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_stuck_is_a_fix_that_repeats_any_draft_already_found_wrong() -> None:
    wrong = Draft(step=1, text="A", problems=["1 of 2 tests pass"])
    other = Draft(step=2, kind="fix", text="B", problems=["0 of 2 tests pass"])
    back_to_a = Draft(step=3, kind="fix", text="A", problems=["1 of 2 tests pass"])
    fresh = Draft(step=3, kind="fix", text="C", problems=["1 of 2 tests pass"])
    plain = Draft(step=2, text="A", problems=["1 of 2 tests pass"])  # a refine step, not a fix
    state = {"max_steps": 5, "primary": None, "validated": True, "run_tokens": 0}
    assert StopWhenStuck()(StopState([wrong, other, back_to_a], **state)) == "stuck"
    assert StopWhenStuck()(StopState([wrong, other, fresh], **state)) is None
    assert StopWhenStuck()(StopState([wrong, plain], **state)) is None
