"""The loop's configuration, task defaults, stop rules and selection, without a server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.config.loop import StopConfig
from flows.config.run import RunConfig, build_run_config
from flows.data.records import Draft, Item, Usage
from flows.loop.defaults import with_task_defaults
from flows.loop.plan import build_plan
from flows.loop.select import select_draft, total_reward
from flows.loop.stopping import stop_reason
from refine.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def draft(step: int, score: float | None = None, problems: tuple[str, ...] = ()) -> Draft:
    rewards = {} if score is None else {"r": score}
    return Draft(step=step, text=f"text {step}", rewards=rewards, problems=list(problems))


def reason(drafts: list[Draft], max_steps: int = 9, **stop: object) -> str | None:
    return stop_reason(
        drafts,
        max_steps=max_steps,
        stop=StopConfig(**stop),  # type: ignore[arg-type]
        primary="r",
        validated=True,
        run_tokens=0,
    )


def test_the_readme_loop_example_is_a_valid_config(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The refinement loop") :]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    path = tmp_path / "refine.toml"
    path.write_text(example.group(1), encoding="utf-8")
    config = build_run_config({}, path)
    plan = build_plan(with_task_defaults(config, []))
    assert [v.name for v in plan.validators] == ["python_compiles", "tests_pass", "regex_must_not"]
    assert plan.primary == "test_pass_rate" and plan.uses_sandbox


@pytest.mark.parametrize(
    ("task", "row", "validators", "rewards", "valid"),
    [
        ("codegen", {"prompt": "p", "tests": "assert f()"}, ["python_compiles", "tests_pass"],
         ["test_pass_rate"], True),
        ("codegen", {"prompt": "p"}, ["python_compiles"], [], True),
        ("summarize", {"text": "t", "reference": "r"}, [], ["rouge_l"], False),
        ("summarize", {"text": "t"}, [], [], False),
        ("translate", {"text": "t", "reference": "r"}, [], ["chrf"], False),
        ("qa", {"question": "q", "reference": "r"}, [], ["token_f1", "exact_match"], False),
        ("generic", {"input": "i", "reference": "r"}, [], [], False),
    ],
)  # fmt: skip
def test_task_defaults(
    task: str, row: dict[str, str], validators: list[str], rewards: list[str], valid: bool
) -> None:
    reference = row.pop("reference", None)
    items = [Item(id="1", line=1, fields=row, reference=reference)]
    config = with_task_defaults(RunConfig(task=task), items)
    assert config.validators == validators and config.rewards == rewards
    assert config.stop.stop_when_valid is valid
    explicit = RunConfig(
        task=task,
        validators=[],
        rewards=["bleu"],
        stop={"stop_when_valid": False},
        critique={"enabled": False},
    )
    assert with_task_defaults(explicit, items) == explicit


def test_rules_that_need_a_reward_fail_without_one() -> None:
    for changes in ({"select": "best"}, {"stop": {"plateau_steps": 2}}):
        with pytest.raises(ConfigError, match="needs a reward.*known rewards: bleu"):
            build_plan(RunConfig(task="generic", rewards=[], **changes))  # type: ignore[arg-type]


def test_stop_when_valid_without_a_validator_fails_instead_of_never_firing() -> None:
    config = RunConfig(task="summarize", validators=[], stop={"stop_when_valid": True})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="stop_when_valid needs a validator.*python_compiles"):
        build_plan(config)
    codegen = with_task_defaults(RunConfig(task="codegen"), [])
    assert build_plan(codegen).validators  # the codegen default pairs it with python_compiles


def test_stop_rules_in_order() -> None:
    assert reason([draft(1, 0.2)], stop_when_valid=True) == "valid"
    assert reason([draft(1, 0.2, ("bad",))], stop_when_valid=True) is None
    assert reason([draft(1, 0.9)], reward_threshold=0.9) == "reward_threshold"
    assert reason([draft(1, 0.9, ("bad",))], reward_threshold=0.9) is None  # never a bad draft
    same = [draft(1), draft(2).model_copy(update={"text": "text 1"})]
    assert reason(same) == "converged" and reason(same, stop_when_unchanged=False) is None
    climbing = [draft(1, 0.1), draft(2, 0.5), draft(3, 0.4)]
    assert reason(climbing, plateau_steps=2) is None
    assert reason([*climbing, draft(4, 0.5)], plateau_steps=2) == "plateau"
    costly = draft(1).model_copy(update={"usage": Usage(prompt_tokens=90, completion_tokens=10)})
    assert reason([costly], max_tokens_per_item=100) == "token_budget"
    assert reason([costly], max_tokens_per_item=101) is None
    assert reason([draft(3)], max_steps=3) == "max_steps"


def test_selection_last_or_best_ties_to_the_later_step() -> None:
    drafts = [draft(1, 0.8), draft(2, 0.5), draft(3, 0.8), draft(4, 0.9, ("bad",))]
    best = select_draft(drafts, "best", "r")
    last = select_draft(drafts, "last", "r")
    assert best is not None and best.step == 3  # 0.8 twice: the later; step 4 is not usable
    assert last is not None and last.step == 3
    assert select_draft(drafts[:2], "best", "r").step == 1  # type: ignore[union-attr]
    unscored = [draft(1), draft(2)]
    assert select_draft(unscored, "best", "r").step == 2  # type: ignore[union-attr]
    assert select_draft([draft(1, 0.3, ("bad",))], "best", "r") is None
    assert total_reward(drafts, "r") == pytest.approx(3.0) and total_reward(unscored, "r") is None
