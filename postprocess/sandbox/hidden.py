"""Hidden tests: the ``hidden_test_pass_rate`` reward, scored from the row's ``reference``.

For codegen a row's ``reference`` may hold hidden tests in the same format as its visible
``tests``: Python source whose top-level ``assert`` statements are the tests, other statements
(imports, helper functions such as HumanEval's ``def check(candidate): ...``) being setup run in
order. A whole suite that must pass as one is one test when wrapped in an assert, e.g.
``assert check(add) is None``. A list of strings is joined into one source.

The reference never reaches a template (:data:`prompts.HIDDEN_FIELDS`) and a reward never
becomes a problem, so the model never sees the hidden tests or their outcome: only the record's
``rewards`` show the share passed. It must be a secondary reward (never the first configured):
the primary reward selects ``best`` and stops on ``reward_threshold``/``plateau``, which would
let the hidden tests steer the run. :func:`flows.loop.plan.check_loop_inputs` refuses a run that
makes it primary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from postprocess.rewards import REFERENCE_FIELD, Reward, RewardDraft, item_references
from postprocess.sandbox.checks import SandboxTests

__all__ = ["HIDDEN_TESTS_FIELD", "HIDDEN_TEST_REWARD", "HiddenTests", "hidden_tests_of"]

HIDDEN_TESTS_FIELD = REFERENCE_FIELD
"""The row field holding the hidden tests: the reference, which templates never see."""

HIDDEN_TEST_REWARD = "hidden_test_pass_rate"
"""The name the reward is registered under."""


def hidden_tests_of(row: Mapping[str, Any]) -> str:
    """The row's hidden test source: its reference, read by the rule every reference-based reward
    uses (:func:`~postprocess.rewards.item_references`), a list of strings joined by lines.

    Raises:
        RewardUnavailable: no reference, a blank one, or one that is not text.
    """
    return "\n".join(item_references(row))


class HiddenTests:
    """The ``hidden_test_pass_rate`` reward over a run's :class:`SandboxTests` (its limits, its
    opt-out and its memo of results)."""

    def __init__(self, sandbox: SandboxTests) -> None:
        self.sandbox = sandbox

    def reward(self) -> Reward:
        """``hidden_test_pass_rate``: passed hidden tests over all hidden tests, 0..1."""

        def reward(draft: RewardDraft, row: Mapping[str, Any]) -> float:
            return self.sandbox.run(draft.text, hidden_tests_of(row)).pass_rate

        return reward
