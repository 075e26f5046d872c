"""Scoring a finished run's drafts with rewards it did not compute: ``refine eval --input DATA
--score SPEC``.

A run scores its drafts with the rewards configured at the time (or the task's defaults). To
measure it with another reward afterwards (BLEU beside chrF, a user reward, references that
arrived later), the drafts are scored again here from the dataset's rows, with the same reward
registry and rules as the run: a reward that cannot be computed for an item leaves no value,
never an invented one. The LLM judge needs the model and ``loglik`` needs the run's logprobs,
so both are refused: configure them in ``refine run``.
"""

from __future__ import annotations

from pathlib import Path

from flows.config.run import RunConfig
from flows.data.records import Item, Trajectory
from flows.export.inputs import read_dataset
from flows.loop.checks import CheckCrashed, assess
from flows.loop.plan import LoopPlan, build_plan
from postprocess.rewards import RewardDraft
from refine.errors import ConfigError, FieldProblem, InputError

__all__ = ["Rescorer"]

NEEDS_THE_RUN = {"loglik": "the run's token logprobs"}


class Rescorer:
    """Adds the rewards named by ``specs`` to every draft of a record, from its dataset row."""

    def __init__(self, dataset: Path, specs: tuple[str, ...]) -> None:
        if not specs:
            raise ConfigError("--score needs at least one reward spec")
        self.dataset = dataset
        self.items, _ = read_dataset(dataset)
        self.plan = _plan(specs)
        self.labels = [reward.label for reward in self.plan.rewards]

    def __call__(self, record: Trajectory) -> Trajectory:
        """``record`` with each draft's rewards extended (a label it had is replaced)."""
        item = self.items.get(record.id)
        if item is None:
            problem = FieldProblem(0, None, f"no row has id {record.id!r}, an item of the output")
            raise InputError(self.dataset, [problem], hint="is this the dataset the run read?")
        row = _row(item)
        drafts = []
        for draft in record.drafts:
            try:
                found = assess(self.plan, row, RewardDraft(draft.text), validate=False, score=True)
            except CheckCrashed as exc:
                raise CheckCrashed(f"item {record.id!r}, step {draft.step}: {exc}") from exc
            rewards = {k: v for k, v in draft.rewards.items() if k not in self.labels}
            drafts.append(draft.model_copy(update={"rewards": rewards | found.rewards}))
        return record.model_copy(update={"drafts": drafts})


def _row(item: Item) -> dict[str, object]:
    """What a reward reads, as during the run: the fields plus ``id`` and ``reference``."""
    return {**item.fields, "id": item.id, "reference": item.reference}


def _plan(specs: tuple[str, ...]) -> LoopPlan:
    plan = build_plan(RunConfig(rewards=list(specs), validators=[]))
    for judge in plan.judges:
        raise ConfigError(
            f"--score {judge.label!r}: the judge asks the model, so it is scored during "
            'refine run (rewards = ["judge"]), not afterwards'
        )
    for reward in plan.rewards:
        if reward.name in NEEDS_THE_RUN:
            raise ConfigError(
                f"--score {reward.label!r} needs {NEEDS_THE_RUN[reward.name]}, which the output "
                "does not keep: score it during refine run"
            )
    return plan
