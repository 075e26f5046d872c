"""``refine show``: one item's drafts step by step, on real outputs of every task kind.

The outputs are written once per session by real runs (tests/view/outputs.py); the command
runs in-process through the real CLI app, and once as the installed ``refine`` script to see
the exit code and message of a user's mistake as a shell sees them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.view.items import draft_views, load_trajectories, summarize
from refine.errors import ConfigError
from tests.cli_helpers import REFINE
from tests.view.outputs import (
    CAT_DRAFTS,
    ELM_DRAFTS,
    PARSER_DRAFT,
    PRIME_CRITIQUE,
    ViewOutputs,
)

WIDE = {"COLUMNS": "200"}  # one line per fact, so a test reads lines, not rich's wrapping


def show(*args: str | Path) -> str:
    """The output of ``refine show ARGS``, which must succeed."""
    result = CliRunner().invoke(app, ["show", *map(str, args)], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def section(output: str, start: str, end: str | None = None) -> str:
    """The part of ``output`` from the line starting with ``start`` to the next ``end``."""
    begin = output.index(start)
    stop = output.find(end, begin + len(start)) if end else -1
    return output[begin:] if stop < 0 else output[begin:stop]


def test_each_step_shows_the_words_removed_and_added_since_the_draft_before(
    view_outputs: ViewOutputs,
) -> None:
    out = show(view_outputs.summarize, "elm")
    assert "item elm · ok · stop: max_steps · 3 steps · returned: step 3" in out
    step1 = section(out, "step 1", "step 2")
    assert ELM_DRAFTS[0] in step1 and "[-" not in step1 and "{+" not in step1
    step2 = section(out, "step 2", "step 3")
    assert "[-Council-]{+The council+} closes [-a road.-]{+Elm Road on Sundays.+}" in step2
    assert "-3 +6 words" in step2
    step3 = section(out, "step 3 · returned")
    assert "The council closes Elm Road {+to cars+} on Sundays." in step3
    assert "+2 words" in step3 and "[-" not in step3


def test_each_draft_shows_its_tokens_rewards_and_problems_and_the_item_its_totals(
    view_outputs: ViewOutputs,
) -> None:
    (record,) = load_trajectories(view_outputs.summarize, ["elm"])
    out = show(view_outputs.summarize, "elm")
    for draft in record.drafts:
        part = section(out, f"step {draft.step}", f"step {draft.step + 1}")
        usage = draft.usage
        assert (
            f"tokens   {usage.tokens:,} (prompt {usage.prompt_tokens:,}, "
            f"completion {usage.completion_tokens:,})"
        ) in part
        assert f"rewards  rouge_l {draft.rewards['rouge_l']:.3g}" in part
        assert "problems none" in part
    first, last = record.drafts[0].rewards["rouge_l"], record.drafts[-1].rewards["rouge_l"]
    assert f"rouge_l {first:.3g} → {last:.3g}" in out
    assert f"{record.usage.tokens:,} tokens" in out


def test_codegen_shows_the_failing_tests_as_problems_and_the_fix_step(
    view_outputs: ViewOutputs,
) -> None:
    out = show(view_outputs.codegen, "add")
    assert "stop: valid · 2 steps · returned: step 2" in out
    step1 = section(out, "step 1", "step 2")
    assert "rewards  test_pass_rate 0.25" in step1
    assert "problems 1 of 4 tests pass" in step1
    assert "`assert add(2, 3) == 5` -> AssertionError" in step1
    step2 = section(out, "step 2 · fix · returned")
    assert "return a [---]{+++} b" in step2  # the one word changed: - became +
    assert "rewards  test_pass_rate 1" in step2 and "problems none" in step2


def test_critique_is_shown_and_an_output_without_rewards_says_so(
    view_outputs: ViewOutputs,
) -> None:
    out = show(view_outputs.critique, "prime")
    assert "item prime · ok · stop: critic_satisfied · 2 steps · returned: step 2" in out
    step1, step2 = section(out, "step 1", "step 2"), section(out, "step 2 · returned")
    assert f"critique {PRIME_CRITIQUE}" in step1 and "critique No issues." in step2
    assert "[-51-]{+53+}" in step2
    assert "rewards  none" in step1 and "rewards  none" in step2
    # the critique's own request counts in the step's tokens
    (record,) = load_trajectories(view_outputs.critique, ["prime"])
    assert f"; {record.drafts[0].total_usage.tokens:,} with the step's other requests" in step1
    table = show(view_outputs.critique)
    assert "critic_satisfied" in table and "reward" in table


def test_best_of_n_lists_every_candidate_with_its_problems_and_the_winner(
    view_outputs: ViewOutputs,
) -> None:
    out = show(view_outputs.best_of_n, "city")
    assert "3 candidates; won: #2 (the only one of the 3 candidates without problems)" in out
    lines = out.splitlines()
    loser = next(line for line in lines if "not json" in line and "Expecting value" in line)
    winner = next(line for line in lines if line.strip().startswith("▶"))
    assert "the draft is not valid JSON" in loser
    assert '{"city": "Paris"}' in winner and "none" in winner


@pytest.mark.parametrize(
    ("name", "item", "drafts", "reward"),
    [
        ("translate", "cat", CAT_DRAFTS, "chrf"),
        ("qa", "road", ("The road is Elm Street.", "Elm Road"), "token_f1"),
    ],
)
def test_translate_and_qa_show_their_drafts_and_rewards(
    view_outputs: ViewOutputs, name: str, item: str, drafts: tuple[str, ...], reward: str
) -> None:
    out = show(getattr(view_outputs, name), item)
    assert f"item {item} · ok · stop: max_steps · 2 steps · returned: step 2" in out
    assert drafts[0] in section(out, "step 1", "step 2")
    assert "{+" in section(out, "step 2 · returned") and f"rewards  {reward} " in out


def test_failed_shows_only_the_failed_items_with_their_errors(
    view_outputs: ViewOutputs,
) -> None:
    out = show(view_outputs.summarize, "--failed")
    assert "item elm" not in out
    bakery = section(out, "item bakery", "item parser")
    assert "failed · stop: error · 0 steps · returned: nothing" in bakery
    assert "error: step 1:" in bakery and "prompt too long for context" in bakery
    assert "no drafts: the item failed before its first draft" in bakery
    parser = section(out, "item parser")
    assert "returned: step 1" in parser and "error: step 2:" in parser
    assert PARSER_DRAFT in section(parser, "step 1 · returned")
    assert (
        show(view_outputs.codegen, "--failed").strip()
        == f"no failed items in {view_outputs.codegen}"
    )


def test_with_no_id_a_table_of_the_items_and_how_to_pick_one(view_outputs: ViewOutputs) -> None:
    out = show(view_outputs.summarize)
    rows: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line.split())
    elm = summarize(load_trajectories(view_outputs.summarize, ["elm"])[0])
    assert elm.first_reward is not None and elm.last_reward is not None
    first, last = f"{elm.first_reward:.3g}", f"{elm.last_reward:.3g}"
    assert rows["elm"] == [
        "elm",
        "ok",
        "max_steps",
        "3",
        "step",
        "3",
        first,
        "→",
        last,
        f"{elm.tokens:,}",
    ]
    assert rows["bakery"] == ["bakery", "failed", "error", "0", "-", "-", "0"]
    assert rows["id"] == ["id", "status", "stop", "steps", "output", "rouge_l", "tokens"]
    assert "bakery failed: step 1:" in out and "prompt too long" in out
    assert f"refine show {view_outputs.summarize} elm" in out
    assert f"refine show {view_outputs.summarize} --failed" in out


def test_every_task_kind_shows_every_item_without_error(view_outputs: ViewOutputs) -> None:
    for name, path in view_outputs.all().items():
        records = load_trajectories(path)
        out = show(path, *(record.id for record in records))
        for record in records:
            assert f"item {record.id} · {record.status}" in out, name
            for view in draft_views(record):
                assert f"step {view.step}" in out, name
        assert str(summarize(records[0]).steps) in show(path), name


def test_an_unknown_id_names_itself_and_the_file_and_exits_non_zero(
    view_outputs: ViewOutputs,
) -> None:
    proc = subprocess.run(
        [REFINE, "show", str(view_outputs.summarize), "elm", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "300", "PATH": ""},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "no item with id 'nope' in this output (3 item(s): bakery, parser, elm)" in proc.stderr
    assert str(view_outputs.summarize) in proc.stderr and "Traceback" not in proc.stderr
    assert "problem(s) in the input" not in proc.stderr  # an output, not an input
    with pytest.raises(ConfigError, match="'nope', 'gone'"):
        load_trajectories(view_outputs.summarize, ["nope", "elm", "gone"])


def test_a_file_that_is_not_an_output_gets_the_readers_error(
    view_outputs: ViewOutputs, tmp_path: Path
) -> None:
    data = view_outputs.summarize.with_name("data.jsonl")  # the run's input, not its output
    result = CliRunner().invoke(app, ["show", str(data)], env=WIDE)
    assert result.exit_code == 2 and result.exception is not None
    assert isinstance(result.exception, SystemExit)
    assert "line 1, field 'status': Field required" in result.output
    assert "is this the --output file of `refine run`?" in result.output
    missing = CliRunner().invoke(app, ["show", str(tmp_path / "none.jsonl")], env=WIDE)
    assert missing.exit_code == 2 and "file not found" in missing.output
