"""The ``hidden_test_pass_rate`` reward: hidden tests from the row's reference, in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config.run import RunConfig
from flows.data.records import Item
from flows.loop.checks import assess
from flows.loop.defaults import with_task_defaults
from flows.loop.plan import SANDBOXED, build_plan, check_loop_inputs
from postprocess.rewards import RewardDraft, RewardUnavailable
from postprocess.sandbox.checks import SandboxTests
from postprocess.sandbox.hidden import HIDDEN_TEST_REWARD, HiddenTests, hidden_tests_of
from refine.errors import ConfigError, InputError

ALMOST = "def add(a, b):\n    return a + b if abs(a) < 1000 else 0\n"
RIGHT = "def add(a, b):\n    return a + b\n"
HIDDEN = "\n".join(
    [
        "assert add(1, 2) == 3",
        "assert add(-4, 4) == 0",
        "assert add(10**6, 1) == 10**6 + 1",
    ]
)
CHECK = (
    "def check(candidate):\n"
    "    assert candidate(1, 2) == 3\n"
    "    assert candidate(10**6, 1) == 10**6 + 1\n"
    "\n"
    "assert check(add) is None\n"
)


def _reward() -> HiddenTests:
    return HiddenTests(SandboxTests())


def test_the_share_of_hidden_asserts_passed_is_the_reward() -> None:
    reward = _reward().reward()
    row = {"prompt": "p", "tests": "assert add(1, 1) == 2", "reference": HIDDEN}
    assert reward(RewardDraft(ALMOST), row) == pytest.approx(2 / 3)
    assert reward(RewardDraft(RIGHT), row) == 1.0


def test_a_check_function_wrapped_in_one_assert_passes_only_when_all_of_it_passes() -> None:
    reward = _reward().reward()
    assert reward(RewardDraft(ALMOST), {"reference": CHECK}) == 0.0
    assert reward(RewardDraft(RIGHT), {"reference": CHECK}) == 1.0
    assert reward(RewardDraft(RIGHT), {"reference": [CHECK]}) == 1.0  # a list is joined


def test_a_row_without_hidden_tests_has_no_value() -> None:
    for row in ({}, {"reference": None}, {"reference": "  "}, {"reference": 3}):
        with pytest.raises(RewardUnavailable):
            hidden_tests_of(row)
    plan = build_plan(RunConfig(task="codegen", rewards=["test_pass_rate", HIDDEN_TEST_REWARD]))
    found = assess(
        plan, {"tests": "assert add(1, 1) == 2"}, RewardDraft(RIGHT), validate=False, score=True
    )
    assert found.rewards == {"test_pass_rate": 1.0}
    assert found.notes == ["reward hidden_test_pass_rate unavailable: the item has no reference"]


def test_the_plan_registers_it_as_a_sandboxed_reward_sharing_the_run_sandbox() -> None:
    plan = build_plan(RunConfig(task="codegen", rewards=["test_pass_rate", HIDDEN_TEST_REWARD]))
    assert HIDDEN_TEST_REWARD in SANDBOXED
    assert [r.label for r in plan.rewards] == ["test_pass_rate", HIDDEN_TEST_REWARD]
    row = {"tests": "assert add(1, 1) == 2", "reference": HIDDEN}
    found = assess(plan, row, RewardDraft(ALMOST), validate=False, score=True)
    assert found.rewards == {"test_pass_rate": 1.0, HIDDEN_TEST_REWARD: pytest.approx(0.666667)}
    assert plan.sandbox.runs == 2  # one run for the visible tests, one for the hidden ones


def test_codegen_defaults_add_it_after_the_visible_reward_when_rows_have_references() -> None:
    items = [Item(id="1", line=1, fields={"prompt": "p", "tests": "assert 1"}, reference=HIDDEN)]
    config = with_task_defaults(RunConfig(task="codegen"), items)
    assert config.rewards == ["test_pass_rate", HIDDEN_TEST_REWARD]


def test_hidden_tests_as_the_primary_reward_are_refused_before_any_request(
    tmp_path: Path,
) -> None:
    items = [Item(id="1", line=1, fields={"prompt": "p"}, reference=HIDDEN)]
    for rewards in ([HIDDEN_TEST_REWARD], [HIDDEN_TEST_REWARD, "test_pass_rate"]):
        plan = build_plan(RunConfig(task="codegen", rewards=rewards))
        with pytest.raises(ConfigError, match="cannot be the primary .first. reward"):
            check_loop_inputs(plan, items, tmp_path / "data.jsonl")
    plan = build_plan(RunConfig(task="codegen", rewards=["test_pass_rate", HIDDEN_TEST_REWARD]))
    check_loop_inputs(plan, items, tmp_path / "data.jsonl")  # secondary: accepted


def test_hidden_tests_that_cannot_give_a_rate_fail_before_any_request(tmp_path: Path) -> None:
    items = [
        Item(id="1", line=1, fields={"prompt": "p"}, reference=HIDDEN),
        Item(id="2", line=2, fields={"prompt": "p"}, reference="assert ("),
        Item(id="3", line=3, fields={"prompt": "p"}, reference="x = 1"),
        Item(id="4", line=4, fields={"prompt": "p"}),
    ]
    plan = build_plan(RunConfig(task="codegen", rewards=["test_pass_rate", HIDDEN_TEST_REWARD]))
    with pytest.raises(InputError) as caught:
        check_loop_inputs(plan, items, tmp_path / "data.jsonl")
    message = str(caught.value)
    assert "line 2, field 'reference': hidden tests: the tests do not parse" in message
    assert "line 3, field 'reference'" in message and "line 1," not in message
