"""Every text reward scores text holding a lone surrogate (half an emoji) instead of crashing.

Answers are made valid Unicode by the client and input rows are checked, but a reward is a plain
callable that custom code and other callers reach too: it must stand on its own.
"""

from __future__ import annotations

import math

import pytest

from postprocess.reward_registry import default_rewards
from postprocess.rewards import RewardDraft, RewardUnavailable, parse_judge_score

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
