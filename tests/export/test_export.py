"""``refine export``: trajectory, SFT and preference lines from a real run's output.

One ``refine run`` (a real subprocess, the fake OpenAI server over HTTP, the session's Prefect
server) produces the records every test exports; answers are scripted per item so the rewards,
the chosen drafts and the pair counts below are known exactly.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.data.records import Draft
from flows.export.formats import ChatMessage, PreferenceLine, SftLine, TrajectoryLine
from flows.loop.select import select_draft
from tests.batch_helpers import write_rows
from tests.cli_helpers import cli_env, read_records, run_refine
from tests.fake_openai import FakeOpenAI, Reply, canonical_json
from tests.prefect_server import PrefectServer

SECRET = "sk-test-SECRET-4242"

# Each item: its row, and the answers its steps get (None: the fake's default answer).
QUESTIONS = {
    "clock": "How long did the repair of the clock tower take?",
    "cookie": "Which ingredient replaced butter in the cookie recipe?",
    "upload": "What is the largest file the upload form accepts?",
    "noref": "Who painted the mural in the station hall?",
    "broken": "Which platform does the night train leave from?",
    "late": "What colour is the new tram livery?",
}
REFERENCES = {
    "clock": "Seven months",
    "cookie": "Coconut oil",
    "upload": "25 MB",
    "late": "Blue",
    "broken": "Platform 4",
}
SCRIPTS: dict[str, list[Reply]] = {
    # rewards (token_f1) rise step by step: 0, 0.5, 1
    "clock": [Reply(content=a) for a in ("A long while", "Seven weeks", "Seven months")],
    # the first draft is the best: 1, 0, 0.667
    "cookie": [Reply(content=a) for a in ("Coconut oil", "Butter", "Coconut oil and sugar")],
    # cut off (a problem, but scored 0.8), fixed (1.0), then the same text again: converged
    "upload": [
        Reply(content="25 MB per", finish_reason="length"),
        Reply(content="25 MB"),
        Reply(content="25 MB"),
    ],
    "broken": [Reply(status=400, content="context overflow")],
    # one usable draft (0.667), then the endpoint refuses: failed, with a usable draft
    "late": [Reply(content="Light blue"), Reply(status=400, content="context overflow")],
}


def canary(item_id: str) -> str:
    """A second reference that no draft ever contains, to find references in exports."""
    return f"REFCANARY-{item_id}"


@dataclass
class Run:
    """A finished ``refine run`` and what the fake server saw."""

    folder: Path
    data: Path
    output: Path
    records: dict[str, dict[str, Any]]
    requests: list[list[dict[str, Any]]]  # the messages of every chat request, in order
    env: dict[str, str]


@pytest.fixture(scope="module")
def run(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("export")
    rows = []
    for item_id, question in QUESTIONS.items():
        row: dict[str, Any] = {"id": item_id, "question": question}
        if item_id in REFERENCES:
            row["reference"] = [REFERENCES[item_id], canary(item_id)]
        rows.append(row)
    data = write_rows(folder / "data.jsonl", rows)
    output = folder / "out.jsonl"
    env = cli_env(prefect_server, folder, OPENAI_API_KEY=SECRET)
    with FakeOpenAI() as server:
        for item_id, replies in SCRIPTS.items():
            server.script(replies, match=QUESTIONS[item_id])
        args = ["run", str(data), "--task", "qa", "--steps", "3", "--select", "best"]
        args += ["-o", str(output), "--base-url", server.base_url, "--model", "m", "--quiet"]
        result = run_refine(args, env)
        assert result.returncode == 1, result.stderr  # two items fail on purpose
        auth = {entry.headers["authorization"] for entry in server.chat_requests()}
        assert auth == {f"Bearer {SECRET}"}  # the canary was live
        requests = [entry.messages for entry in server.chat_requests()]
    records = {record["id"]: record for record in read_records(output)}
    yield Run(folder, data, output, records, requests, env)


def primary(record: dict[str, Any], step: int) -> float | None:
    draft = next(d for d in record["drafts"] if d["step"] == step)
    return draft["rewards"].get(record["reward"])


def export(run: Run, *args: str) -> tuple[int, str]:
    """``refine export`` in-process through the real typer app; exit code and all output."""
    result = CliRunner().invoke(app, ["export", str(run.output), *args])
    return result.exit_code, result.output


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_scripted_run_gives_the_drafts_the_tests_rely_on(run: Run) -> None:
    records = run.records
    assert [primary(records["clock"], t) for t in (1, 2, 3)] == [0.0, 0.5, 1.0]
    assert [primary(records["cookie"], t) for t in (1, 2)] == [1.0, 0.0]
    assert 0.6 < primary(records["cookie"], 3) < 0.7  # type: ignore[operator]
    upload = records["upload"]
    assert [d["kind"] for d in upload["drafts"]] == ["draft", "fix", "draft"]
    assert upload["drafts"][0]["problems"] and primary(upload, 1) == 0.8
    assert upload["stop_reason"] == "converged"
    assert records["noref"]["total_reward"] is None and len(records["noref"]["drafts"]) == 3
    assert records["broken"]["status"] == "failed" and records["broken"]["drafts"] == []
    late = records["late"]
    assert late["status"] == "failed" and late["output"] == "Light blue"


def test_trajectory_one_line_per_draft_with_exact_returns(run: Run) -> None:
    to = run.folder / "trajectory.jsonl"
    args = ["export", str(run.output), "--format", "trajectory", "--to", str(to)]
    result = run_refine([*args, "--input", str(run.data)], run.env)  # the real command
    assert result.returncode == 0, result.stderr
    assert "wrote 13 trajectory line(s)" in result.stdout
    assert "left out 1 item(s): 1 no drafts (failed)" in result.stdout

    raw = to.read_text(encoding="utf-8").splitlines()
    lines = [TrajectoryLine.model_validate_json(line) for line in raw]
    by_id: dict[str, list[TrajectoryLine]] = {}
    for line in lines:
        by_id.setdefault(line.id, []).append(line)
    assert set(by_id) == set(run.records) - {"broken"}
    for item_id, steps in by_id.items():
        record = run.records[item_id]
        drafts = record["drafts"]
        assert [line.step for line in steps] == [d["step"] for d in drafts]
        assert [line.done for line in steps] == [False] * (len(drafts) - 1) + [True]
        values = [primary(record, d["step"]) for d in drafts]
        scored = [v for v in values if v is not None]
        for index, line in enumerate(steps):
            draft = drafts[index]
            assert line.action == draft["text"] and line.kind == draft["kind"]
            assert line.reward == values[index] and line.problems == draft["problems"]
            assert line.state.x == {"question": QUESTIONS[item_id]}  # never the reference
            assert line.state.prior_drafts == [d["text"] for d in drafts[:index]]
            assert line.state.prior_steps == [d["step"] for d in drafts[:index]]
            assert line.state.problems == (drafts[index - 1]["problems"] if index else [])
            assert line.status == record["status"] and line.stop_reason == record["stop_reason"]
            usage = draft["usage"]
            assert line.tokens == usage["prompt_tokens"] + usage["completion_tokens"] > 0
            if scored:
                assert line.return_ == math.fsum(scored)
                rest = [v for v in values[index:] if v is not None]
                assert line.return_to_go == math.fsum(rest)
                assert line.return_ == pytest.approx(record["total_reward"], abs=1e-6)
            else:
                assert line.return_ is None and line.return_to_go is None
    clock = by_id["clock"]
    assert [line.return_to_go for line in clock] == [1.5, 1.5, 1.0]
    first = next(json.loads(line) for line in raw if '"id":"clock"' in line)
    assert first["return"] == 1.5  # spelled "return" in the file

    no_input = run.folder / "trajectory-no-input.jsonl"
    code, _ = export(run, "--to", str(no_input))
    assert code == 0
    assert [line["state"]["x"] for line in lines_of(no_input)] == [None] * 13


def test_reward_flag_picks_another_label_and_an_unknown_one_is_an_error(run: Run) -> None:
    to = run.folder / "em.jsonl"
    code, _ = export(run, "--to", str(to), "--reward", "exact_match")
    assert code == 0
    clock = [line for line in lines_of(to) if line["id"] == "clock"]
    assert [line["reward"] for line in clock] == [0.0, 0.0, 1.0]
    assert clock[0]["return"] == 1.0

    bad = run.folder / "bad-reward.jsonl"
    code, out = export(run, "--to", str(bad), "--reward", "rouge_l")
    assert code == 2
    assert "--reward 'rouge_l'" in out and "exact_match, token_f1" in out
    assert not bad.exists()


def step_one_messages(run: Run, item_id: str) -> list[dict[str, Any]]:
    """What the engine sent for the item's first step, from the fake server's log."""
    question = json.dumps(QUESTIONS[item_id])[1:-1].encode()
    return next(m for m in run.requests if question in canonical_json(m))


def test_sft_is_the_step_one_prompt_answered_by_the_best_draft(run: Run) -> None:
    to = run.folder / "sft.jsonl"
    args = ["export", str(run.output), "--format", "sft", "--to", str(to)]
    result = run_refine([*args, "--input", str(run.data), "--task", "qa"], run.env)
    assert result.returncode == 0, result.stderr
    assert "wrote 5 sft line(s)" in result.stdout
    assert "left out 1 item(s): 1 no usable draft (failed)" in result.stdout

    lines = {line["id"]: line for line in lines_of(to)}
    assert set(lines) == {"clock", "cookie", "upload", "noref", "late"}
    for item_id, raw in lines.items():
        line = SftLine.model_validate(raw)
        roles = [m.role for m in line.messages]  # system, the qa demos as turns, the request
        assert roles[0] == "system" and roles[-2:] == ["user", "assistant"]
        assert roles[1:-2] == ["user", "assistant"] * ((len(roles) - 3) // 2)
        assert all(isinstance(m["content"], str) for m in raw["messages"])
        assert raw["messages"][:-1] == step_one_messages(run, item_id)
        record = run.records[item_id]
        drafts = [Draft.model_validate(d) for d in record["drafts"]]
        best = select_draft(drafts, "best", record["reward"])
        assert best is not None
        assert line.messages[-1].content == best.text and line.step == best.step
        assert line.reward == best.rewards.get("token_f1")
    expected = {"clock": 3, "cookie": 1, "upload": 3, "noref": 3, "late": 1}
    assert {item_id: line["step"] for item_id, line in lines.items()} == expected
    assert lines["noref"]["reward"] is None


def test_min_reward_keeps_exactly_the_items_at_or_above_it(run: Run) -> None:
    late = primary(run.records["late"], 1)
    assert late is not None
    to = run.folder / "sft-min.jsonl"
    common = ["--format", "sft", "--input", str(run.data), "--task", "qa", "--to", str(to)]
    code, out = export(run, *common, "--min-reward", "0.9")
    assert code == 0, out
    assert {line["id"] for line in lines_of(to)} == {"clock", "cookie", "upload"}
    assert "1 below --min-reward" in out and "1 no primary reward (--min-reward set)" in out
    code, out = export(run, *common, "--min-reward", repr(late))  # >=: the boundary is kept
    assert code == 0, out
    assert {line["id"] for line in lines_of(to)} == {"clock", "cookie", "upload", "late"}


def pairs_of(run: Run, *flags: str) -> list[dict[str, Any]]:
    to = run.folder / "pairs.jsonl"
    args = ["--format", "preference", "--input", str(run.data), "--task", "qa"]
    code, out = export(run, *args, "--to", str(to), *flags)
    assert code == 0, out
    return lines_of(to)


BEST_VS_REST = {"clock 3>1", "clock 3>2", "cookie 1>2", "cookie 1>3", "upload 3>1"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], BEST_VS_REST),  # upload 3 and 2 tie at 1.0: no pair; 3 is best (the later step)
        (["--pairs", "all"], BEST_VS_REST | {"clock 2>1", "cookie 3>2", "upload 2>1"}),
        (["--margin", "0.5"], {"clock 3>1", "clock 3>2", "cookie 1>2"}),
        (
            ["--pairs", "all", "--margin", "0.5"],
            {"clock 3>1", "clock 3>2", "clock 2>1", "cookie 1>2", "cookie 3>2"},
        ),
    ],
)
def test_preference_pairs(run: Run, flags: list[str], expected: set[str]) -> None:
    lines = pairs_of(run, *flags)
    got = [f"{line['id']} {line['chosen_step']}>{line['rejected_step']}" for line in lines]
    assert len(got) == len(set(got)) and set(got) == expected
    margin = float(flags[flags.index("--margin") + 1]) if "--margin" in flags else 0.0
    for raw in lines:
        line = PreferenceLine.model_validate(raw)
        record = run.records[line.id]
        assert line.chosen_reward == primary(record, line.chosen_step)
        assert line.rejected_reward == primary(record, line.rejected_step)
        assert line.chosen_reward > line.rejected_reward
        assert line.chosen_reward - line.rejected_reward >= margin - 1e-9
        chosen = next(d for d in record["drafts"] if d["step"] == line.chosen_step)
        rejected = next(d for d in record["drafts"] if d["step"] == line.rejected_step)
        assert chosen["problems"] == [] and line.chosen[0].content == chosen["text"]
        assert line.rejected == [ChatMessage(role="assistant", content=rejected["text"])]
        assert raw["prompt"] == step_one_messages(run, line.id)
    if not flags:  # a draft with problems may be rejected, never chosen
        upload = next(line for line in lines if line["id"] == "upload")
        assert upload["rejected"][0]["content"] == "25 MB per"


FORMAT_ARGS = {
    "trajectory": [],
    "sft": ["--task", "qa"],
    "preference": ["--task", "qa", "--pairs", "all"],
}


@pytest.mark.parametrize("fmt", list(FORMAT_ARGS))
def test_references_only_on_request_and_never_the_api_key(run: Run, fmt: str) -> None:
    common = ["--format", fmt, "--input", str(run.data), *FORMAT_ARGS[fmt]]
    plain, with_reference = run.folder / f"{fmt}-plain.jsonl", run.folder / f"{fmt}-ref.jsonl"
    assert export(run, *common, "--to", str(plain))[0] == 0
    assert export(run, *common, "--to", str(with_reference), "--with-reference")[0] == 0
    data = plain.read_bytes()
    assert b"REFCANARY" not in data and b'"reference"' not in data
    assert canary("clock").encode() in with_reference.read_bytes()
    for line in lines_of(with_reference):
        holder = line["state"] if fmt == "trajectory" else line
        reference = REFERENCES.get(line["id"])
        assert holder["reference"] == ([reference, canary(line["id"])] if reference else None)
    for path in (plain, with_reference):
        assert SECRET.encode() not in path.read_bytes()


def from_parquet(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A Parquet row in the JSONL line's shape: JSON columns parsed, the map a dict again."""

    def parsed(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    holder = row["state"] if fmt == "trajectory" else row
    if "reference_json" in holder:
        holder["reference"] = parsed(holder.pop("reference_json"))
    if fmt == "trajectory":
        row["state"]["x"] = parsed(row["state"].pop("x_json"))
        row["rewards"] = dict(row["rewards"])
    return row


@pytest.mark.parametrize("fmt", list(FORMAT_ARGS))
def test_parquet_holds_the_same_rows_as_jsonl(run: Run, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    common = ["--format", fmt, "--input", str(run.data), "--with-reference", *FORMAT_ARGS[fmt]]
    jsonl, parquet = run.folder / f"{fmt}.jsonl", run.folder / f"{fmt}.parquet"
    assert export(run, *common, "--to", str(jsonl))[0] == 0
    code, out = export(run, *common, "--to", str(parquet))
    assert code == 0, out
    table = pq.read_table(parquet)
    rows = [from_parquet(row, fmt) for row in table.to_pylist()]
    assert rows == lines_of(jsonl) and rows
    if fmt == "trajectory":
        assert table.schema.field("rewards").type == pa.map_(pa.string(), pa.float64())
        assert table.schema.field("state").type.field("x_json").type == pa.string()
    else:
        column = "messages" if fmt == "sft" else "prompt"
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        assert table.schema.field(column).type == pa.list_(message)


def test_parquet_without_pyarrow_says_what_to_install(run: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pyarrow blocked by the test')\n")
    to = tmp_path / "out.parquet"
    env = {**run.env, "PYTHONPATH": str(blocker.parent)}
    result = run_refine(["export", str(run.output), "--to", str(to)], env)
    assert result.returncode == 2
    assert "pip install 'prefect-refine[parquet]'" in result.stderr
    assert not to.exists()


def test_flag_errors_exit_2_and_create_nothing(run: Run, tmp_path: Path) -> None:
    to = tmp_path / "x.jsonl"
    cases = [
        (["--format", "bogus", "--to", str(to)], "--format 'bogus'"),
        (["--to", str(tmp_path / "x.csv")], ".jsonl or .parquet"),
        (["--format", "sft", "--to", str(to)], "--format sft needs --input"),
        (["--format", "preference", "--to", str(to)], "needs --input"),
        (["--with-reference", "--to", str(to)], "--with-reference needs --input"),
        (["--margin", "0.1", "--to", str(to)], "--margin and --pairs apply to"),
        (["--format", "preference", "--pairs", "some", "--to", str(to)], "--pairs 'some'"),
        (["--min-reward", "0.5", "--to", str(to)], "--min-reward applies to"),
        (["--to", str(run.output)], "would overwrite an input"),
    ]
    for args, message in cases:
        code, out = export(run, *args)
        assert code == 2 and message in out, (args, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_ids_missing_from_the_dataset_are_an_error_and_the_target_is_untouched(
    run: Run, tmp_path: Path, suffix: str
) -> None:
    rows = [json.loads(line) for line in run.data.read_text().splitlines()]
    partial = write_rows(tmp_path / "partial.jsonl", [r for r in rows if r["id"] == "clock"])
    to = tmp_path / f"sft{suffix}"
    to.write_text("earlier export\n")
    code, out = export(run, "--format", "sft", "--input", str(partial), "--to", str(to))
    assert code == 2
    assert "'cookie' is not in" in out and "5 record(s) in all have ids the dataset lacks" in out
    assert to.read_text() == "earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.jsonl", to.name]


def test_a_large_export_streams_and_parquet_batches_match_jsonl(run: Run, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    big = tmp_path / "big.jsonl"
    with big.open("w", encoding="utf-8") as fh:
        for copy in range(200):  # 2,600 trajectory lines: three Parquet batches
            for record in run.records.values():
                fh.write(json.dumps({**record, "id": f"{record['id']}-{copy}"}) + "\n")
    jsonl, parquet = tmp_path / "t.jsonl", tmp_path / "t.parquet"
    for to in (jsonl, parquet):
        result = CliRunner().invoke(app, ["export", str(big), "--to", str(to)])
        assert result.exit_code == 0, result.output
    rows = [from_parquet(row, "trajectory") for row in pq.read_table(parquet).to_pylist()]
    assert len(rows) == 2600 and rows == lines_of(jsonl)


def test_a_malformed_line_names_its_number_and_a_torn_tail_is_skipped(
    run: Run, tmp_path: Path
) -> None:
    good = run.output.read_text(encoding="utf-8").splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join([*good[:2], '{"id": "x", "status"\n', *good[2:]]))
    to = tmp_path / "t.jsonl"
    result = CliRunner().invoke(app, ["export", str(broken), "--to", str(to)])
    assert result.exit_code == 2
    assert f"{broken}:line 3: not valid JSON" in result.output
    assert not to.exists() and [p.name for p in tmp_path.iterdir()] == ["broken.jsonl"]

    twice = tmp_path / "twice.jsonl"  # an id written again: its latest record counts
    first = json.loads(good[0] if json.loads(good[0])["drafts"] else good[1])
    changed = first | {"drafts": [{**d, "text": "CHANGED"} for d in first["drafts"]]}
    twice.write_text("".join([*good, json.dumps(changed) + "\n"]))
    result = CliRunner().invoke(app, ["export", str(twice), "--to", str(to)])
    assert result.exit_code == 0, result.output
    assert "left out 1 earlier record(s) of ids written again" in result.output
    actions = [line["action"] for line in lines_of(to) if line["id"] == first["id"]]
    assert actions == ["CHANGED"] * len(first["drafts"])

    torn = tmp_path / "torn.jsonl"
    torn.write_text("".join(good) + good[0][: len(good[0]) // 2])  # a writer mid-line
    result = CliRunner().invoke(app, ["export", str(torn), "--to", str(to)])
    assert result.exit_code == 0, result.output
    assert "skipped a torn last line" in result.output
    drafts = {item_id: len(record["drafts"]) for item_id, record in run.records.items()}
    assert Counter(line["id"] for line in lines_of(to)) == {k: n for k, n in drafts.items() if n}
