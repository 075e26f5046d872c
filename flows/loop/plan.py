"""Resolve the loop's configuration into callables, and check what it needs before any request.

Validator and reward specs are resolved against fresh registries that also hold what only a
run has: the sandboxed ``tests_pass`` validator and ``test_pass_rate`` and
``hidden_test_pass_rate`` rewards (closing over the run's sandbox settings) and the LLM ``judge``
reward (scored by the engine, which holds the client). Unknown names fail here, listing the
valid ones. Hidden tests may only be a secondary reward: a run that makes them primary is
refused before any request (:func:`check_loop_inputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.config.run import RunConfig
from flows.data.records import Item
from postprocess.cleaner_registry import default_cleaners
from postprocess.reward_registry import NamedReward, build_rewards, default_rewards
from postprocess.rewards import RewardDraft, RewardUnavailable
from postprocess.sandbox.checks import TESTS_FIELD, SandboxTests
from postprocess.sandbox.hidden import HIDDEN_TEST_REWARD, HIDDEN_TESTS_FIELD, HiddenTests
from postprocess.sandbox.run import InvalidTests, SandboxUnavailable, check_sandbox, parse_tests
from postprocess.validator_registry import NamedValidator, build_validators, default_validators
from prompts import TaskKind
from refine.errors import ConfigError, FieldProblem, InputError

__all__ = [
    "SANDBOXED",
    "SECONDARY_ONLY",
    "Judge",
    "JudgeReward",
    "LoopPlan",
    "build_plan",
    "check_loop_inputs",
    "cleaner_chain",
    "refuse_secondary_primary",
]

logger = logging.getLogger(__name__)

SANDBOXED = frozenset({"tests_pass", "test_pass_rate", HIDDEN_TEST_REWARD})
"""The validator and reward names that run generated code."""

SECONDARY_ONLY = frozenset({HIDDEN_TEST_REWARD})
"""Rewards that must never be primary: they read what the run must not be steered by."""


@dataclass(frozen=True)
class JudgeReward:
    """The LLM judge: the engine renders ``<task>/judge.j2``, asks the model and parses the
    score with :func:`~postprocess.rewards.parse_judge_score` (divided by ``scale_max``)."""

    scale_max: float = 10.0

    def __call__(self, draft: RewardDraft, row: Mapping[str, Any]) -> float:
        raise RewardUnavailable("the judge is scored by the engine, which holds the client")


@dataclass(frozen=True)
class Judge:
    """A configured LLM judge, as the engine scores it: the reward's label and its scale."""

    label: str
    scale_max: float


def judge(scale_max: float = 10.0) -> JudgeReward:
    """Factory of the ``judge`` reward: ``{name = "judge", scale_max = 10}``."""
    if isinstance(scale_max, bool) or not isinstance(scale_max, int | float) or scale_max <= 0:
        raise ConfigError(f"reward judge: scale_max must be a positive number, got {scale_max!r}")
    return JudgeReward(float(scale_max))


@dataclass(frozen=True)
class LoopPlan:
    """The run's resolved validators and rewards (the first reward is primary)."""

    validators: tuple[NamedValidator, ...]
    rewards: tuple[NamedReward, ...]
    sandbox: SandboxTests

    @property
    def primary(self) -> str | None:
        """The label of the reward that selects ``best``, meets the threshold and plateaus."""
        return self.rewards[0].label if self.rewards else None

    @property
    def uses_sandbox(self) -> bool:
        """Whether any check runs generated code (then checks run in worker threads)."""
        names = [v.name for v in self.validators] + [r.name for r in self.rewards]
        return any(name in SANDBOXED for name in names)

    @property
    def needs_logprobs(self) -> bool:
        """Whether requests must ask for logprobs (only the ``loglik`` reward reads them)."""
        return any(reward.name == "loglik" for reward in self.rewards)

    @property
    def judges(self) -> tuple[Judge, ...]:
        """The rewards scored by an extra request to the model (the engine asks it)."""
        return tuple(
            Judge(r.label, r.reward.scale_max)
            for r in self.rewards
            if isinstance(r.reward, JudgeReward)
        )

    @property
    def computed(self) -> tuple[NamedReward, ...]:
        """The rewards computed from the draft and row alone: every reward but the judges."""
        return tuple(r for r in self.rewards if not isinstance(r.reward, JudgeReward))


def build_plan(config: RunConfig) -> LoopPlan:
    """Resolve ``config``'s specs (task defaults already applied: see
    :func:`flows.loop.defaults.with_task_defaults`); a mistake raises ConfigError."""
    sandbox = SandboxTests(
        config.sandbox.limits(), allow_unsandboxed=config.sandbox.allow_unsandboxed
    )
    validator_registry = default_validators()
    validator_registry.register("tests_pass", sandbox.validator)
    reward_registry = default_rewards()
    reward_registry.register("test_pass_rate", sandbox.reward)
    reward_registry.register(HIDDEN_TEST_REWARD, HiddenTests(sandbox).reward)
    reward_registry.register("judge", judge)
    base_dir = config.config_file.parent if config.config_file else None
    validators = build_validators(config.validators or [], base_dir, validator_registry)
    rewards = build_rewards(config.rewards or [], reward_registry)
    plan = LoopPlan(tuple(validators), tuple(rewards), sandbox)
    for name, used in [
        ("stop.stop_when_valid", config.stop.stop_when_valid),  # would never fire
        ("stop_sampling_when_valid", config.stop_sampling_when_valid),  # would stop at once
    ]:
        if used and not validators:  # say so now
            raise ConfigError(
                f"{name} needs a validator, and none is configured for task "
                f"{config.task!r}; add one (known validators: "
                f"{', '.join(validator_registry.names())}) or drop {name.split('.')[-1]}"
            )
    if plan.primary is None:
        needs = {
            'select = "best"': config.select == "best",
            "stop.reward_threshold": config.stop.reward_threshold is not None,
            "stop.plateau_steps": config.stop.plateau_steps is not None,
        }
        wanted = [name for name, used in needs.items() if used]
        if wanted:
            raise ConfigError(
                f"{', '.join(wanted)} needs a reward, and none is configured for task "
                f'{config.task!r}; add one, e.g. rewards = ["rouge_l"] (known rewards: '
                f"{', '.join(reward_registry.names())})"
            )
    return plan


def refuse_secondary_primary(plan: LoopPlan) -> None:
    """A run's primary reward must not be one of :data:`SECONDARY_ONLY` (hidden tests).

    The primary reward picks ``best`` and fires ``reward_threshold`` and ``plateau``, so a
    hidden reward there would steer the run by tests the model must never be measured against
    in the open. ``refine eval --score`` may still lead with it: that measures a finished run.

    Raises:
        ConfigError: the first reward is a secondary-only one.
    """
    if plan.rewards and plan.rewards[0].name in SECONDARY_ONLY:
        name = plan.rewards[0].name
        raise ConfigError(
            f"reward {name!r} cannot be the primary (first) reward: it scores hidden tests, and "
            "the primary reward selects the output and stops the loop, which would let the "
            f"hidden tests steer the run; list a visible reward first, e.g. rewards = "
            f'["test_pass_rate", "{name}"]'
        )


def _hidden_test_problems(plan: LoopPlan, items: Sequence[Item]) -> list[FieldProblem]:
    if not any(r.name == HIDDEN_TEST_REWARD for r in plan.rewards):
        return []
    problems = []
    for item in items:
        source = item.reference
        if source in (None, "", []):
            continue  # that item's drafts get a "reward unavailable" note
        parts = [source] if isinstance(source, str) else source
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            why = "hidden tests must be a string or a list of strings"
            problems.append(FieldProblem(item.line, HIDDEN_TESTS_FIELD, why))
            continue
        try:
            parse_tests("\n".join(parts))
        except InvalidTests as exc:
            problems.append(FieldProblem(item.line, HIDDEN_TESTS_FIELD, f"hidden tests: {exc}"))
    return problems


def check_loop_inputs(plan: LoopPlan, items: Sequence[Item], path: Path) -> None:
    """Before any request: hidden tests are not the primary reward, every row's ``tests`` (and,
    with ``hidden_test_pass_rate``, its ``reference``) parse, and the sandbox can run here.

    Raises ConfigError when hidden tests are the primary reward; InputError naming file, line
    and field for bad tests; SandboxUnavailable (a ConfigError) where bubblewrap cannot run,
    unless ``sandbox.allow_unsandboxed`` is set, in which case it warns loudly and generated
    code runs with resource limits only.
    """
    refuse_secondary_primary(plan)
    if not plan.uses_sandbox:
        return
    problems = []
    for item in items:
        tests = item.fields.get(TESTS_FIELD)
        if not tests:
            continue
        try:
            parse_tests(str(tests))
        except InvalidTests as exc:
            problems.append(FieldProblem(item.line, TESTS_FIELD, str(exc)))
    problems += _hidden_test_problems(plan, items)
    if problems:
        hint = "Each row's tests (and hidden tests in its reference) must be Python with an assert."
        raise InputError(path, problems, hint=hint)
    try:
        check_sandbox()
    except SandboxUnavailable as exc:
        if not plan.sandbox.allow_unsandboxed:
            raise SandboxUnavailable(
                f"{exc}\nGenerated code is not run without a sandbox; to run it anyway with "
                "resource limits only (it can then read your files and use the network), pass "
                "--allow-unsandboxed or set [sandbox] allow_unsandboxed = true"
            ) from None
        logger.warning(
            "NO SANDBOX: generated code will run with resource limits only and can read and "
            "write this user's files and use the network (allow_unsandboxed). Reason: %s",
            exc,
        )


def cleaner_chain(config: RunConfig, kind: TaskKind) -> Callable[[str], str]:
    """The configured post-processing chain, or the task's default one (the task table's).

    Raises:
        ConfigError: an unknown cleaner or a bad argument, naming the spec.
    """
    specs = config.postprocess or kind.default_cleaners(config.max_output_chars)
    return default_cleaners().build_chain(specs)
