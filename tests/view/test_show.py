"""``refine show``: one item's drafts step by step, on real outputs of every task kind.

The outputs are written once per session by real runs (tests/view/outputs.py); the command
runs in-process through the real CLI app, and once as the installed ``refine`` script to see
the exit code and message of a user's mistake as a shell sees them.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from flows.batch import refine_batch
from flows.cli import app
from flows.view.html import write_report
from flows.view.items import draft_views, load_trajectories, summarize
from flows.view.safe_text import visible
from flows.view.terminal import items_table
from refine.errors import ConfigError
from tests.batch_helpers import make_config, read_records, write_rows
from tests.cli_helpers import REFINE
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
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


CONTROL_ID = "\u202eevil-id"
CONTROL_DRAFT = "Hi \x1b[31mRED\x1b[0m \x1b]0;TITLE\x07 \x1b[2J \u202eesrever \u2066x\x9b end."


def two_drafts_run(fake_server: FakeOpenAI, folder: Path, item_id: str, drafts: list[str]) -> Path:
    """The output of a real two-step generic run in ``folder`` of one item ``item_id`` whose
    drafts are ``drafts``."""
    data = write_rows(folder / "data.jsonl", [{"id": item_id, "input": "Say hello."}])
    fake_server.script([Reply(content=text) for text in drafts])
    out = folder / "run" / "out.jsonl"
    out.parent.mkdir()
    asyncio.run(refine_batch(data, out, make_config(fake_server, folder, task="generic", steps=2)))
    assert [d["text"] for d in read_records(out)[0]["drafts"]] == drafts
    return out


@pytest.fixture
def control_output(fake_server: FakeOpenAI, prefect_api: PrefectServer, tmp_path: Path) -> Path:
    """A real run whose id holds a right-to-left override and whose two drafts hold terminal
    escape sequences (colour, window title, clear screen), bidi controls and a C1 control;
    the second draft adds a word."""
    return two_drafts_run(
        fake_server, tmp_path, CONTROL_ID, [CONTROL_DRAFT, CONTROL_DRAFT + " inserted"]
    )


def test_visible_shows_control_characters_and_bidi_controls_and_keeps_the_rest() -> None:
    assert visible("a\x1b[2Jb\x07\x00\x7f\x9b") == "a\\x1b[2Jb\\x07\\x00\\x7f\\x9b"
    assert visible("\u202eab\u2066\u2069\u200e\u200f\u061c") == (
        "<U+202E>ab<U+2066><U+2069><U+200E><U+200F><U+061C>"
    )
    assert visible("line\n\tindented é → 日本") == "line\n\tindented é → 日本"


def test_control_sequences_and_bidi_controls_in_the_data_are_shown_not_sent(
    control_output: Path,
) -> None:
    shown_draft = (
        "Hi \\x1b[31mRED\\x1b[0m \\x1b]0;TITLE\\x07 \\x1b[2J <U+202E>esrever <U+2066>x\\x9b end."
    )
    table = show(control_output)
    item = show(control_output, CONTROL_ID)
    for out in (table, item):
        assert not any(char in out for char in "\x1b\x07\x9b\u202e\u2066"), repr(out)
        assert "<U+202E>evil-id" in out
    assert "item <U+202E>evil-id · ok" in item
    assert shown_draft in section(item, "step 1", "step 2")
    assert "end. {+inserted+}" in section(item, "step 2")


def test_a_narrow_terminal_keeps_the_ids_and_whole_numbers(view_outputs: ViewOutputs) -> None:
    records = load_trajectories(view_outputs.summarize)
    tokens = {record.id: f"{summarize(record).tokens:,}" for record in records}
    for width in (60, 66):
        console = Console(width=width, record=True)
        console.print(items_table(records))
        out = console.export_text()
        assert max(len(line) for line in out.splitlines()) <= width
        for item_id, count in tokens.items():
            assert any(line.split()[:1] == [item_id] for line in out.splitlines()), (width, out)
            assert count in out, (width, out)
        assert "rouge_l" in out, (width, out)
        elm = summarize(next(r for r in records if r.id == "elm"))
        assert elm.last_reward is not None and f"{elm.last_reward:.3g}" in out, (width, out)


def test_failed_among_given_ids_names_them_when_none_failed(view_outputs: ViewOutputs) -> None:
    out = show(view_outputs.summarize, "elm", "--failed").strip()
    assert out == f"none of the given ids failed in {view_outputs.summarize} (elm)"


def test_a_torn_last_line_is_noted_once_on_stderr(
    view_outputs: ViewOutputs, tmp_path: Path
) -> None:
    growing = tmp_path / "out.jsonl"
    growing.write_bytes(view_outputs.summarize.read_bytes() + b'{"id": "next", "sta')
    for args in ([], ["elm"]):
        result = CliRunner().invoke(app, ["show", str(growing), *args], env=WIDE)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("incomplete") == 1 and "left out" in result.stderr
        assert "incomplete" not in result.stdout
    whole = CliRunner().invoke(app, ["show", str(view_outputs.summarize)], env=WIDE)
    assert whole.stderr == ""


def test_best_of_n_with_no_usable_candidate_says_which_was_kept_not_won(
    fake_server: FakeOpenAI, prefect_api: PrefectServer, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "city", "input": "The city as JSON."}])
    for seed in range(3):
        fake_server.script([Reply(content=f"not json {seed}")], match=f"seed={seed}")
    out = tmp_path / "none" / "out.jsonl"
    out.parent.mkdir()
    config = make_config(
        fake_server, tmp_path, task="generic", steps=1, samples=3, validators=["json"]
    )
    asyncio.run(refine_batch(data, out, config))
    (draft,) = read_records(out)[0]["drafts"]
    assert len(draft["candidates"]) == 3 and draft["candidate"] is not None
    assert all(candidate["problems"] for candidate in draft["candidates"])
    shown = show(out, "city")
    assert f"3 candidates, none usable; kept: #{draft['candidate']}" in shown
    assert "won" not in shown
    page = tmp_path / "page.html"
    write_report(out, page)
    html = page.read_text("utf-8")
    assert f"none usable, candidate {draft['candidate']} kept" in html and " won<" not in html
