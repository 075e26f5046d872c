"""Every text reward scores text holding a lone surrogate (half an emoji) instead of crashing.

Answers are made valid Unicode by the client and input rows are checked, but a reward is a plain
callable that custom code and other callers reach too: it must stand on its own.
"""

from __future__ import annotations

import math

import pytest

from postprocess.reward_registry import default_rewards
from postprocess.rewards import RewardDraft, RewardUnavailable, parse_judge_score
from postprocess.sandbox.checks import SandboxTests

LONE = "The pump \ud83d was repaired."
ROWS = [
    {"reference": "The pump was repaired."},
    {"reference": "The pump \udc00 was repaired."},
    {"reference": ["The pump \ud83d was repaired.", "Fixed."]},
]


@pytest.mark.parametrize("name", default_rewards().names())
@pytest.mark.parametrize("row", ROWS, ids=["plain reference", "odd reference", "references"])
def test_each_text_reward_scores_a_lone_surrogate(name: str, row: dict[str, object]) -> None:
    reward = default_rewards().resolve(name)
    for text in (LONE, "\ud83d", "The pump was repaired."):
        score = reward(RewardDraft(text, (-0.5,) * 4), row)
        assert isinstance(score, float) and math.isfinite(score), (name, text)


def test_the_judge_score_parser_reads_around_a_lone_surrogate() -> None:
    assert parse_judge_score("Fine \ud83d work.\nScore: 7/10") == 0.7
    with pytest.raises(RewardUnavailable, match="no score found"):
        parse_judge_score("\ud83d")


def test_code_tests_report_a_lone_surrogate_in_the_code_as_its_problem() -> None:
    """Code holding half an emoji is not valid Python source: the draft fails its tests with
    a reason, run after run (the memo keys such text too), instead of crashing the step."""
    tests = SandboxTests()
    code = "def label():\n    return 'pump \ud83d'\n"
    for _ in range(2):
        result = tests.run(code, "assert label() == 'pump'")
        assert result.error is not None and "surrogates not allowed" in result.error
        assert [outcome.passed for outcome in result.outcomes] == [False]
    assert tests.runs == 1  # the second run came from the memo
