"""The sandbox as a validator (``tests_pass``) and a reward (``test_pass_rate``) for codegen.

Both run the draft's code against the row's ``tests`` in :func:`~postprocess.sandbox.run_code_tests`
and share one result per (code, tests), so configuring both costs one sandbox run per draft.
:class:`SandboxTests` holds the limits and the opt-out chosen for the run; its
:meth:`~SandboxTests.validator` and :meth:`~SandboxTests.reward` are the factories the engine
registers under those names. Calls block (a process runs), so the engine calls them from a
worker thread, a few at a time.

The problems quote each failing ``assert`` and its error, trimmed, so the next step's ``fix``
prompt shows the model what broke; templates print them as data, never as template code.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from postprocess.rewards import Reward, RewardDraft, RewardUnavailable
from postprocess.sandbox.run import DEFAULT_LIMITS, SandboxLimits, SandboxResult, run_code_tests
from postprocess.validators import ValidationResult, Validator

__all__ = ["TESTS_FIELD", "SandboxTests", "test_problems"]

TESTS_FIELD = "tests"
"""The row field holding the tests: Python source whose ``assert`` statements are the tests."""

_SHOWN_FAILURES = 5
_SHOWN_CHARS = 500  # per quoted assert or error: room for the values and the line they came from
_SHOWN_OUTPUT = 600  # of the code's own output
_MEMO_SIZE = 256
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{4,}\b")  # differs run to run; the runner scrubs errors


def _trim(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_few(lines: list[str], rest: str) -> list[str]:
    """At most five quoted failures, then a count of the rest (``... and 3 <rest>``)."""
    shown = lines[:_SHOWN_FAILURES]
    if len(lines) > _SHOWN_FAILURES:
        shown.append(f"... and {len(lines) - _SHOWN_FAILURES} {rest}")
    return shown


def test_problems(result: SandboxResult) -> list[str]:
    """The problems a failed run shows the model: each failing assert with its error, trimmed.

    A crash while loading the code is one problem, not one per test; at most five failures are
    quoted, then a count of the rest; then the code's own checks that failed (its own asserts
    are problems, never tests); the code's own output (head and tail) comes last. The text
    depends only on the code and tests, so an identical re-run gives an identical prompt.
    """
    problems = [
        f"test setup failed (tests line {o.line}): `{_trim(o.source, _SHOWN_CHARS)}` raised "
        f"{_trim(o.error or '', _SHOWN_CHARS)}"
        for o in result.setup_errors
    ]
    failures = result.failures
    shared = result.error if failures and all(f.error == result.error for f in failures) else None
    if shared is not None:
        problems.append(f"{_trim(shared, _SHOWN_CHARS)}; none of the {result.total} tests passed")
    else:
        problems += _first_few(
            [
                f"test failed (tests line {o.line}): `{_trim(o.source, _SHOWN_CHARS)}`"
                f" -> {_trim(o.error or '', _SHOWN_CHARS)}"
                for o in failures
            ],
            "more failing tests",
        )
    problems += _first_few(
        [
            f"your own check at solution.py line {c.line} failed: "
            f"`{_trim(c.source, _SHOWN_CHARS)}`: {_trim(c.error or '', _SHOWN_CHARS)}"
            for c in result.own_checks
            if not c.passed
        ],
        "more of your own checks failed",
    )
    if problems:
        problems.insert(0, f"{result.passed} of {result.total} tests pass")
        if result.output.strip():
            output = _ADDRESS.sub("0x\u2026", result.output)
            problems.append(f"output of the run: {_trim(output, _SHOWN_OUTPUT)}")
    return problems


class SandboxTests:
    """Runs drafts against their row's tests in the sandbox, remembering recent results."""

    def __init__(
        self, limits: SandboxLimits = DEFAULT_LIMITS, *, allow_unsandboxed: bool = False
    ) -> None:
        self.limits = limits
        self.allow_unsandboxed = allow_unsandboxed
        self.runs = 0
        self._memo: OrderedDict[str, SandboxResult] = OrderedDict()
        self._lock = threading.Lock()

    def run(self, code: str, tests: str) -> SandboxResult:
        """The result of ``code`` against ``tests``; blocking. Raises InvalidTests and
        SandboxUnavailable as :func:`~postprocess.sandbox.run_code_tests` does."""
        key = hashlib.sha256(
            f"{len(code)}:{code}{tests}".encode("utf-8", "surrogatepass")
        ).hexdigest()
        with self._lock:
            if (hit := self._memo.get(key)) is not None:
                self._memo.move_to_end(key)
                return hit
        result = run_code_tests(code, tests, self.limits, allow_unsandboxed=self.allow_unsandboxed)
        with self._lock:
            self.runs += 1
            self._memo[key] = result
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return result

    def validator(self) -> Validator:
        """``tests_pass``: a problem per failing test; a row without tests has nothing to fail."""

        def check(draft: str, row: Mapping[str, Any]) -> ValidationResult:
            tests = row.get(TESTS_FIELD)
            if not tests:
                return ValidationResult()
            return ValidationResult(test_problems(self.run(draft, str(tests))))

        return check

    def reward(self) -> Reward:
        """``test_pass_rate``: passed tests over all tests, 0..1."""

        def reward(draft: RewardDraft, row: Mapping[str, Any]) -> float:
            tests = row.get(TESTS_FIELD)
            if not tests:
                raise RewardUnavailable("the item has no tests")
            return self.run(draft.text, str(tests)).pass_rate

        return reward
