"""Per-task defaults of the refinement loop, in one place (the README's table copies this one).

A default applies only where the configuration leaves the setting out (``None``); an explicit
empty list means "none". Defaults that need data apply only when the dataset has it, so a
dataset without references is never scored against nothing:

=========  ===============================  =============================  ===============
task       validators                       rewards                        stop_when_valid
=========  ===============================  =============================  ===============
codegen    python_compiles, + tests_pass    test_pass_rate (rows with      true
           when any row has ``tests``       ``tests``)
summarize  none                             rouge_l (rows with reference)  false
translate  none                             chrf (rows with reference)     false
qa         none                             token_f1, exact_match (ref.)   false
generic    none                             none                           false
=========  ===============================  =============================  ===============

"Rows with reference" means any row of the dataset has a non-empty ``reference``; rows of that
dataset without one get a ``reward ... unavailable`` note on each draft instead of a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from flows.loop_settings import Spec
from flows.records import Item
from flows.settings import RunConfig

__all__ = ["REFERENCE_REWARDS", "with_task_defaults"]

REFERENCE_REWARDS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "summarize": ("rouge_l",),
        "translate": ("chrf",),
        "qa": ("token_f1", "exact_match"),
    }
)
"""The rewards each task gets by default when its rows carry references."""


def _has_references(items: Sequence[Item]) -> bool:
    return any(item.reference not in (None, "", []) for item in items)


def _has_tests(items: Sequence[Item]) -> bool:
    return any(item.fields.get("tests") for item in items)


def with_task_defaults(config: RunConfig, items: Sequence[Item]) -> RunConfig:
    """``config`` with every loop setting it left to the task filled in from the table above."""
    validators: list[Spec] | None = config.validators
    rewards: list[Spec] | None = config.rewards
    codegen = config.task == "codegen"
    if validators is None:
        validators = ["python_compiles"] if codegen else []
        if codegen and _has_tests(items):
            validators.append("tests_pass")
    if rewards is None:
        if codegen:
            rewards = ["test_pass_rate"] if _has_tests(items) else []
        elif _has_references(items):
            rewards = list(REFERENCE_REWARDS.get(config.task, ()))
        else:
            rewards = []
    stop = config.stop
    if stop.stop_when_valid is None:
        stop = stop.model_copy(update={"stop_when_valid": codegen})
    return config.model_copy(update={"validators": validators, "rewards": rewards, "stop": stop})
