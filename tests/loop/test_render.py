"""The one step-message renderer, and the task table it reads: plain unit tests, no Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config.run import RunConfig
from flows.data.records import Draft, Item
from flows.loop.defaults import with_task_defaults
from flows.loop.plan import SANDBOXED
from flows.loop.render import StepRenderer
from postprocess import default_cleaners, default_rewards, default_validators
from prompts import TASK_KINDS
from refine.errors import ConfigError


def _renderer(**settings: object) -> StepRenderer:
    return StepRenderer.for_config(RunConfig(**settings))  # type: ignore[arg-type]


def _user(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"]


def test_step_one_shows_x_and_no_draft() -> None:
    renderer = _renderer(task="summarize")
    item = Item(id="a", line=1, fields={"text": "The river flooded the town twice."})
    messages = renderer.messages(renderer.fields(item), [], 1)
    assert messages[0]["role"] == "system"
    assert "The river flooded the town twice." in _user(messages)
    assert "[draft" not in _user(messages)


def test_history_is_bounded_to_the_last_k_drafts() -> None:
    renderer = _renderer(task="generic", history=2, steps=5)
    item = Item(id="a", line=1, fields={"input": "x"})
    drafts = [Draft(step=t, text=f"DRAFT-NUMBER-{t}") for t in range(1, 5)]
    prompt = _user(renderer.messages(renderer.fields(item), drafts, 5))
    assert "DRAFT-NUMBER-4" in prompt and "DRAFT-NUMBER-3" in prompt
    assert "DRAFT-NUMBER-2" not in prompt and "DRAFT-NUMBER-1" not in prompt


def test_fix_role_quotes_the_latest_problems() -> None:
    renderer = _renderer(task="generic", steps=3)
    item = Item(id="a", line=1, fields={"input": "x"})
    drafts = [Draft(step=1, text="broken", problems=["PROBLEM-ONE is here"])]
    fix = _user(renderer.messages(renderer.fields(item), drafts, 2, "fix"))
    plain = _user(renderer.messages(renderer.fields(item), drafts, 2))
    assert "PROBLEM-ONE is here" in fix
    assert fix != plain


def test_translate_languages_come_from_the_config_unless_the_row_sets_them() -> None:
    renderer = _renderer(task="translate", source_lang="German", target_lang="Italian")
    plain = Item(id="a", line=1, fields={"text": "Hallo", "target_lang": ""})
    own = Item(id="b", line=2, fields={"text": "Hallo", "target_lang": "Spanish"})
    assert renderer.fields(plain)["target_lang"] == "Italian"  # an empty cell is absent
    assert renderer.fields(plain)["source_lang"] == "German"
    assert renderer.fields(own)["target_lang"] == "Spanish"
    assert "Italian" in _user(renderer.messages(renderer.fields(plain), [], 1))
    for blank in ("  \n", None, float("nan")):  # a spreadsheet's blank or NaN cell is absent too
        row = Item(id="c", line=3, fields={"text": "Hallo", "target_lang": blank})
        assert renderer.fields(row)["target_lang"] == "Italian", blank


def test_an_optional_field_of_only_invisible_characters_takes_its_default() -> None:
    renderer = _renderer(task="translate", target_lang="Italian")
    for invisible in ("\u200b", "\ufeff", " \u2060\u200c\u200d\u00a0 "):
        row = Item(id="a", line=1, fields={"text": "Hallo", "target_lang": invisible})
        assert renderer.fields(row)["target_lang"] == "Italian", ascii(invisible)
        assert "into Italian:" in _user(renderer.messages(renderer.fields(row), [], 1))
    qa = _renderer(task="qa")
    row = Item(id="q", line=1, fields={"question": "Why?", "context": "\u200b"})
    assert qa.fields(row)["context"] is None


def test_placeholder_drafts_are_what_the_dry_run_shows() -> None:
    renderer = _renderer(task="generic", steps=3)
    item = Item(id="a", line=1, fields={"input": "x"})
    prompt = _user(renderer.placeholder(item, 3))
    assert "[draft of step 2]" in prompt
    fix = _user(renderer.placeholder(item, 2, "fix"))
    assert "[problems found in the draft of step 1]" in fix
    same = renderer.messages(renderer.fields(item), [Draft(step=1, text="[draft of step 1]")], 2)
    assert renderer.placeholder(item, 2) == same


@pytest.mark.parametrize("name", sorted(TASK_KINDS))
def test_every_default_in_the_task_table_names_a_registered_part(name: str) -> None:
    kind = TASK_KINDS[name]
    cleaners, validators, rewards = default_cleaners(), default_validators(), default_rewards()
    for spec in kind.default_cleaners(500):
        assert spec.split(":", 1)[0] in cleaners, spec
    run_only = SANDBOXED  # registered per run, over its sandbox
    for spec in kind.default_validators(has_tests=True):
        assert spec in validators or spec in run_only, spec
    for spec in kind.default_rewards(has_tests=True, has_references=True):
        assert spec in rewards or spec in run_only, spec


def test_the_task_table_drives_the_run_defaults() -> None:
    with_reference = [Item(id="a", line=1, fields={"question": "q"}, reference="r")]
    qa = with_task_defaults(RunConfig(task="qa"), with_reference)
    assert qa.rewards == ["token_f1", "exact_match"] and qa.validators == []
    assert qa.stop.stop_when_valid is False
    with_tests = [Item(id="a", line=1, fields={"prompt": "p", "tests": "assert f() == 1"})]
    codegen = with_task_defaults(RunConfig(task="codegen"), with_tests)
    assert codegen.validators == ["python_compiles", "tests_pass"]
    assert codegen.rewards == ["test_pass_rate"] and codegen.stop.stop_when_valid is True
    assert TASK_KINDS["codegen"].default_cleaners(500) == ["extract_code_block", "strip"]
    assert TASK_KINDS["summarize"].default_cleaners(500)[-1] == "truncate_chars:500"


def test_local_stop_sequences_follow_the_kind_of_output() -> None:
    local = RunConfig().local_model
    assert local.stop_for(TASK_KINDS["codegen"].output) == local.stop_code
    assert local.stop_for(TASK_KINDS["summarize"].output) == local.stop


@pytest.mark.parametrize("task", ["summarize", "qa"])
def test_demos_are_earlier_turns_of_every_step_that_has_a_system_prompt(task: str) -> None:
    renderer = StepRenderer.for_config(with_task_defaults(RunConfig(task=task, steps=3), []))
    demos = renderer.examples
    assert demos
    fields = {"summarize": {"text": "The ferry stops on Sundays."}, "qa": {"question": "Why?"}}
    item = Item(id="a", line=1, fields=fields[task])
    drafts = [Draft(step=1, text="first"), Draft(step=2, text="second", problems=["too long"])]
    prefixes = []
    for step, role, given in [(1, None, []), (2, None, drafts[:1]), (3, "fix", drafts)]:
        messages = renderer.messages(renderer.fields(item), given, step, role)
        roles = [m["role"] for m in messages]
        assert roles == ["system"] + ["user", "assistant"] * len(demos) + ["user"], (step, role)
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert answers == [str(d["output"]).strip() for d in demos]
        assert all(str(d["output"]) not in messages[-1]["content"] for d in demos)
        prefixes.append(messages[:-1])
    # the stable prefix: every step starts with the same system prompt and demos
    assert prefixes[0] == prefixes[1] == prefixes[2]
    critique = renderer.messages(renderer.fields(item), drafts[:1], 2, "critique")
    assert [m["role"] for m in critique] == ["user"]


def test_a_user_template_that_pastes_examples_gets_no_demo_turns(tmp_path: Path) -> None:
    (tmp_path / "summarize").mkdir()
    (tmp_path / "summarize" / "initial.j2").write_text(
        "{% for ex in examples %}EX: {{ ex.output }}\n{% endfor %}Summarize: {{ text }}"
    )
    config = with_task_defaults(RunConfig(task="summarize", template_dirs=[tmp_path]), [])
    renderer = StepRenderer.for_config(config)
    messages = renderer.messages({"text": "t"}, [], 1)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1]["content"].count("EX: ") == len(renderer.examples)


def test_hidden_tests_alone_are_no_default_primary_reward() -> None:
    """Codegen rows with hidden tests (``reference``) but no visible ``tests``: the hidden
    reward would be the primary one, steering by the tests no draft may see; left out."""
    codegen = TASK_KINDS["codegen"]
    assert codegen.default_rewards(has_tests=True, has_references=True) == [
        "test_pass_rate",
        "hidden_test_pass_rate",
    ]
    assert codegen.default_rewards(has_tests=False, has_references=True) == []
    assert TASK_KINDS["qa"].default_rewards(False, True) == ["token_f1", "exact_match"]


def test_critique_follows_the_task_table_unless_the_run_says() -> None:
    for name, kind in TASK_KINDS.items():
        config = with_task_defaults(RunConfig(task=name), [])
        assert config.critique.enabled is kind.critique, name
        for chosen in (True, False):
            explicit = RunConfig(task=name, critique={"enabled": chosen})
            assert with_task_defaults(explicit, []).critique.enabled is chosen


def test_demos_lacking_a_field_the_templates_use(tmp_path: Path) -> None:
    """A user template asks for a row field (``audience``) the packaged demos lack: the demos
    are left out, not a failed run; a user's own demo file lacking it is named."""
    (tmp_path / "summarize").mkdir()
    (tmp_path / "summarize" / "initial.j2").write_text(
        '{% include "summarize/input.j2" %}\nWrite for {{ audience }}.'
    )
    config = with_task_defaults(RunConfig(task="summarize", template_dirs=[tmp_path]), [])
    renderer = StepRenderer.for_config(config)
    assert renderer.examples and renderer.demo_turns == []
    messages = renderer.messages({"text": "t", "audience": "engineers"}, [], 1)
    assert [m["role"] for m in messages] == ["system", "user"]

    demos = tmp_path / "demos.jsonl"
    demos.write_text(
        '{"text": "a", "output": "b", "audience": "all"}\n{"text": "c", "output": "d"}\n'
    )
    own = StepRenderer.for_config(config.model_copy(update={"examples_path": demos}))
    with pytest.raises(ConfigError, match=r"demos.jsonl: demo 2 lacks audience"):
        _ = own.demo_turns
