"""The task table's loop defaults applied to a run's configuration.

What each task kind gets by default lives in the task table (:mod:`prompts.tasks`, whose
docstring shows it; the README's table copies it). A default applies only where the
configuration leaves the setting out (``None``); an explicit empty list means "none". Defaults
that need data apply only when the dataset has it, so a dataset without references is never
scored against nothing: "rows with reference" means any row of the dataset has a non-empty
``reference``; rows of that dataset without one get a ``reward ... unavailable`` note on each
draft instead of a number.
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.config.loop import Spec
from flows.config.run import RunConfig
from flows.data.records import Item
from prompts import get_task_kind

__all__ = ["with_task_defaults"]


def _has_references(items: Sequence[Item]) -> bool:
    return any(item.reference not in (None, "", []) for item in items)


def _has_tests(items: Sequence[Item]) -> bool:
    return any(item.fields.get("tests") for item in items)


def with_task_defaults(config: RunConfig, items: Sequence[Item]) -> RunConfig:
    """``config`` with every loop setting it left to the task filled in from the task table.

    Raises:
        ConfigError: an unknown task kind.
    """
    kind = get_task_kind(config.task)
    has_tests = _has_tests(items)
    validators: list[Spec] | None = config.validators
    if validators is None:
        validators = list(kind.default_validators(has_tests))
    rewards: list[Spec] | None = config.rewards
    if rewards is None:
        rewards = list(kind.default_rewards(has_tests, _has_references(items)))
    stop = config.stop
    if stop.stop_when_valid is None:
        stop = stop.model_copy(update={"stop_when_valid": kind.stop_when_valid})
    critique = config.critique
    if critique.enabled is None:
        critique = critique.model_copy(update={"enabled": kind.critique})
    updates = {"validators": validators, "rewards": rewards, "stop": stop, "critique": critique}
    return config.model_copy(update=updates)
