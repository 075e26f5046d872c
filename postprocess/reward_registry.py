"""Name rewards in configuration: a registry of factories and a builder for reward specs.

Rewards are named by the specs every registry reads (see :mod:`postprocess.specs`): a registered
name (``"rouge_l"``), a mapping holding the name and the factory's parameters
(``{"name": "chrf", "word_order": 2}``), or ``"package.module:function"`` naming a user reward
to import (it is the reward itself, so it takes no parameters). Every spec is resolved when the
configuration is read, so a typo fails before the first model call.

Rewards are called ``(draft, row)``, as validators are: the draft judged first, the row (its
context) second. A reward written for the earlier ``(row, draft)`` order would silently get its
arguments swapped, so one whose first parameter is named ``item`` or ``row`` or annotated as a
mapping, or whose second is named ``draft`` or annotated ``RewardDraft``, is refused when built.

The registry is an object built fresh by :func:`default_rewards` for each run, never a mutated
module global. Rewards that need more than a row and a draft are registered on it by their
owners: the LLM judge (which renders the ``judge`` template and calls
:func:`~postprocess.rewards.parse_judge_score`) and the codegen test pass rate (which runs the
sandbox) are added with :meth:`RewardRegistry.register`, a factory closing over the client or
the sandbox.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from postprocess.rewards import (
    Reward,
    RewardDraft,
    RewardUnavailable,
    bleu,
    chrf,
    exact_match,
    loglik,
    rouge_l,
    token_f1,
)
from postprocess.specs import FactoryRegistry, spec_label
from refine.errors import ConfigError

__all__ = [
    "NamedReward",
    "RewardFactory",
    "RewardRegistry",
    "RewardSpec",
    "build_rewards",
    "default_rewards",
]

RewardFactory = Callable[..., Reward]
"""Builds a reward from a spec's parameters, passed as keywords (none for a bare name)."""

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_A_ROW = re.compile(r"(typing\.|collections\.abc\.)?(Mapping|MutableMapping|dict|Dict)\b")

RewardSpec = str | Mapping[str, Any]
"""``"name"``, ``"package.module:function"`` or ``{"name": "name", **parameters}``."""


@dataclass(frozen=True)
class NamedReward:
    """A reward with the spec that configured it; called like the reward it wraps.

    Calling it names the reward in :class:`~postprocess.rewards.RewardUnavailable` and checks
    that a user reward kept the contract of returning a finite number.
    """

    name: str
    reward: Reward
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The name with its parameters, e.g. ``chrf(word_order=2)``: unique within a run."""
        return spec_label(self.name, self.params)

    def __call__(self, draft: RewardDraft, row: Mapping[str, Any]) -> float:
        try:
            value = self.reward(draft, row)
        except RewardUnavailable as exc:
            if exc.reward is not None:
                raise
            raise RewardUnavailable(exc.reason, reward=self.label) from None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise ConfigError(
                f"reward {self.label!r} returned {value!r}, but rewards must return a finite number"
            )
        return float(value)


class RewardRegistry(FactoryRegistry[RewardFactory]):
    """Maps reward names to factories and turns specs into :class:`NamedReward` objects."""

    kind = "reward"
    contract = "(draft, row)"
    call_example: tuple[object, ...] = (RewardDraft(""), {})
    wraps_factory_errors = False  # reward factories name themselves: "reward bleu: ..."

    def resolve(self, spec: RewardSpec) -> NamedReward:
        """The reward a spec names; unknown names fail with the list of known ones."""
        parsed, reward = self.build_spec(spec)
        _refuse_the_old_order(parsed.name, reward)
        return NamedReward(parsed.name, reward, parsed.params)

    def build(self, specs: Sequence[RewardSpec]) -> list[NamedReward]:
        """Resolve every spec up front; the same reward listed twice is a mistake, not a weight."""
        if isinstance(specs, str | Mapping):
            raise ConfigError(f"rewards must be a list of specs, got {specs!r}")
        rewards = [self.resolve(spec) for spec in specs]
        labels = [reward.label for reward in rewards]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"rewards listed more than once: {', '.join(repeated)}")
        return rewards


def default_rewards() -> RewardRegistry:
    """A fresh registry holding the built-in rewards."""
    return RewardRegistry(
        {
            "loglik": lambda: loglik,
            "rouge_l": rouge_l,
            "bleu": bleu,
            "chrf": chrf,
            "exact_match": lambda: exact_match,
            "token_f1": lambda: token_f1,
        }
    )


def build_rewards(
    specs: Sequence[RewardSpec], registry: RewardRegistry | None = None
) -> list[NamedReward]:
    """Build rewards from specs, using the built-in rewards unless a registry is given."""
    return (registry or default_rewards()).build(specs)


def _refuse_the_old_order(name: str, reward: Callable[..., Any]) -> None:
    """Fail on a reward whose signature says ``(row, draft)``: it would get them swapped."""
    try:
        signature = inspect.signature(reward)
    except (TypeError, ValueError):  # nothing to read: trust it
        return
    positional = [p for p in signature.parameters.values() if p.kind in _POSITIONAL]
    if len(positional) < 2:
        return
    first, second = positional[:2]
    if not (
        first.name in ("item", "row")
        or second.name == "draft"
        or _A_ROW.match(_annotation(first))
        or "RewardDraft" in _annotation(second)
    ):
        return
    function = getattr(reward, "__name__", type(reward).__name__)
    raise ConfigError(
        f"reward {name!r}: {function}{signature} takes the row first, but the reward contract "
        "changed to (draft, row): the draft judged first, the row (its context) second, as "
        "validators take them; swap its parameters"
    )


def _annotation(parameter: inspect.Parameter) -> str:
    """A parameter's annotation as text, whether or not annotations are postponed."""
    annotation = parameter.annotation
    if annotation is parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    return str(getattr(annotation, "__name__", None) or annotation)
