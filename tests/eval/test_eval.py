"""``refine eval``: per-step figures, plots, comparison and artifacts, on runs made by the real
flow against the fake server with a scripted model whose answers approach the reference."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from flows.batch import refine_batch
from flows.eval.compare import CompareReport, paired_bootstrap
from flows.eval.stats import EvalReport
from flows.evaluate import refine_eval
from refine.errors import ConfigError
from tests.batch_helpers import make_config, read_records, write_rows
from tests.cli_helpers import REFINE, cli_env
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer

pytestmark = pytest.mark.usefixtures("prefect_api")

# question, reference, the scripted answers step by step, their token F1 against the reference
ITEMS: list[tuple[str, str, list[str], list[float]]] = [
    ("Name the four colours.", "red green blue yellow",
     ["red", "red green", "red green blue yellow"], [0.4, 2 / 3, 1.0]),
    ("Name the four directions.", "north south east west",
     ["north", "north south east", "north south east west"], [0.4, 6 / 7, 1.0]),
    ("Name the first two numbers.", "one two",
     ["one two three", "one two", "one"], [0.8, 1.0, 2 / 3]),
    ("Name the first two letters.", "alpha beta",
     ["alpha beta", "alpha beta"], [1.0, 1.0]),  # the same answer twice: converged at step 2
]  # fmt: skip


def _dataset(tmp_path: Path) -> Path:
    rows = [
        {"id": f"q{n}", "question": question, "reference": reference}
        for n, (question, reference, _, _) in enumerate(ITEMS)
    ]
    return write_rows(tmp_path / "qa.jsonl", rows)


async def _run(
    server: FakeOpenAI,
    tmp_path: Path,
    name: str,
    answers: list[list[str]],
    prefix: str = "",
    **config: Any,
) -> Path:
    """One qa run of up to 3 steps; ``prefix`` selects the template that marks its questions."""
    data = _dataset(tmp_path)
    for (question, _, _, _), script in zip(ITEMS, answers, strict=True):
        server.script([Reply(content=a) for a in script], match=f"<question>{prefix}{question}")
    changes: dict[str, Any] = {"task": "qa", "cache_dir": tmp_path / f"cache-{name}", **config}
    if prefix:
        folder = tmp_path / "templates-b" / "qa"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "input.j2").write_text(f"<question>{prefix}{{{{ question }}}}</question>")
        changes["template_dirs"] = [tmp_path / "templates-b"]
    out = tmp_path / f"{name}.jsonl"
    await refine_batch(data, out, make_config(server, tmp_path, **changes))
    return out


async def _approaching_run(server: FakeOpenAI, tmp_path: Path) -> Path:
    return await _run(server, tmp_path, "run", [answers for _, _, answers, _ in ITEMS])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _is_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 5_000, f"{path} is only {len(data)} bytes"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def test_eval_shows_reward_rising_per_step_with_the_exact_values(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    from flows.eval.run import EvalRequest, evaluate_files

    out = await _approaching_run(fake_server, tmp_path)
    records = read_records(out)
    assert {r["stop_reason"] for r in records} == {"max_steps", "converged"}

    result = evaluate_files(EvalRequest((out,), tmp_path / "eval"))
    report = result.report
    assert isinstance(report, EvalReport)
    assert report.primary == "token_f1" and report.reward_labels == ["token_f1", "exact_match"]
    f1 = [row.rewards["token_f1"] for row in report.steps]
    # each item's latest draft at step t: item 4 stopped at step 2 and keeps its answer
    expected = [_mean([s[min(t, len(s) - 1)] for *_, s in ITEMS]) for t in range(3)]
    assert [s.mean for s in f1] == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx([0.65, 0.880952, 0.916667], abs=1e-6)
    assert f1[0].mean < f1[1].mean < f1[2].mean
    assert [s.n for s in f1] == [4, 4, 4]
    assert f1[0].min == pytest.approx(0.4) and f1[0].max == pytest.approx(1.0)
    assert [row.rewards["exact_match"].mean for row in report.steps] == [0.25, 0.5, 0.75]
    assert [row.running_share for row in report.steps] == [1.0, 1.0, 0.75]
    # best drafts: q0 and q1 at step 3, q2 at step 2, q3 ties at 1.0 and the later step wins
    assert [row.best_here_share for row in report.steps] == [0.0, 0.5, 0.5]
    by_selection = {row.selection: row for row in report.selections}
    assert by_selection["best"].rewards["token_f1"].mean == pytest.approx(1.0)
    assert by_selection["last"].rewards["token_f1"].mean == pytest.approx(11 / 12)
    assert by_selection["output"].rewards["token_f1"].mean == pytest.approx(11 / 12)
    assert report.stop_reasons == {"max_steps": 3, "converged": 1}

    # cumulative cost per item, from the usage the records carry
    def tokens(record: dict[str, Any], step: int) -> int:
        return sum(
            d["usage"]["prompt_tokens"] + d["usage"]["completion_tokens"]
            for d in record["drafts"]
            if d["step"] <= step
        )

    for row in report.steps:
        assert row.cum_tokens_mean == pytest.approx(_mean([tokens(r, row.step) for r in records]))
    assert report.steps[0].cum_tokens_mean < report.steps[2].cum_tokens_mean

    names = sorted(p.name for p in result.files)
    assert names == [
        "cost_quality.png", "eval.csv", "eval.json", "reward_per_step.png", "stop_reasons.png",
    ]  # fmt: skip
    for path in result.files:
        if path.suffix == ".png":
            width, height = _is_png(path)
            assert width > 400 and height > 100
    assert EvalReport.model_validate_json((tmp_path / "eval" / "eval.json").read_text()) == report
    rows = list(csv.DictReader((tmp_path / "eval" / "eval.csv").open(encoding="utf-8")))
    assert [r["row"] for r in rows] == ["step 1", "step 2", "step 3", "best", "last", "output"]
    assert [float(r["token_f1 mean"]) for r in rows[:3]] == pytest.approx(expected, abs=1e-4)


async def test_compare_finds_the_better_template(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    from flows.eval.run import EvalRequest, evaluate_files

    worse = [["purple"] * 3, ["up"] * 3, ["zero"] * 3, ["gamma"] * 3]
    a = await _run(fake_server, tmp_path, "a", worse)  # the packaged template
    b = await _run(fake_server, tmp_path, "b", [s for _, _, s, _ in ITEMS], prefix="(B) ")
    prompts = [e.body["messages"][-1]["content"] for e in fake_server.chat_requests()]
    assert len(prompts) == 8 + 11  # A converges at step 2; B as in the first test
    assert sum("<question>(B) " in p for p in prompts) == 11

    result = evaluate_files(EvalRequest((a, b), tmp_path / "cmp", resamples=2_000))
    report = result.report
    assert report.verdict.startswith(f"B ({b}) is better")  # type: ignore[union-attr]
    assert report.interval is not None and report.interval.low > 0  # type: ignore[union-attr]
    assert report.final_a.mean == 0.0 and report.final_b.mean == pytest.approx(11 / 12)  # type: ignore[union-attr]
    assert [s.diff for s in report.steps] == pytest.approx([0.65, 0.880952, 0.916667], abs=1e-6)  # type: ignore[union-attr]
    assert sorted(p.name for p in result.files) == [
        "compare.csv", "compare.json", "compare_per_step.png",
        "frontier.csv", "frontier.json", "frontier.png",
    ]  # fmt: skip
    _is_png(tmp_path / "cmp" / "compare_per_step.png")

    same = evaluate_files(EvalRequest((b, b), tmp_path / "same", resamples=500)).report
    assert same.verdict.startswith("no clear difference")  # type: ignore[union-attr]
    reversed_ = evaluate_files(EvalRequest((b, a), tmp_path / "rev", resamples=500)).report
    assert reversed_.verdict.startswith(f"A ({b}) is better")  # type: ignore[union-attr]


async def test_score_computes_rewards_the_run_did_not(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    from flows.eval.run import EvalRequest, evaluate_files

    answers = [answers for _, _, answers, _ in ITEMS]
    out = await _run(fake_server, tmp_path, "bare", answers, rewards=[])
    assert all(not d["rewards"] for r in read_records(out) for d in r["drafts"])
    unscored = evaluate_files(EvalRequest((out,), tmp_path / "e0")).report
    assert isinstance(unscored, EvalReport) and unscored.primary is None

    request = EvalRequest(
        (out,), tmp_path / "e1", dataset=tmp_path / "qa.jsonl", scores=("token_f1", "bleu")
    )
    report = evaluate_files(request).report
    assert isinstance(report, EvalReport)
    assert report.primary == "token_f1" and report.reward_labels == ["token_f1", "bleu"]
    means = [row.rewards["token_f1"].mean for row in report.steps]
    assert means == pytest.approx([0.65, 0.880952, 0.916667], abs=1e-6)  # as when the run scored
    import sacrebleu

    last = [answers[min(2, len(answers) - 1)] for answers in answers]
    references = [reference for _, reference, _, _ in ITEMS]
    expected_bleu = [
        sacrebleu.sentence_bleu(text, [ref]).score / 100
        for text, ref in zip(last, references, strict=True)
    ]
    assert report.steps[2].rewards["bleu"].mean == pytest.approx(_mean(expected_bleu), abs=1e-6)
    assert read_records(out)[0]["drafts"][0]["rewards"] == {}  # the output file is untouched

    # comparing with a run that has the reward: refused, unless both are scored alike
    scored = await _run(fake_server, tmp_path, "scored", answers)
    with pytest.raises(
        ConfigError,
        match=r"bare.jsonl has no 'token_f1' reward to compare "
        r"with .*scored.jsonl's; its rewards: none",
    ):
        evaluate_files(EvalRequest((scored, out), tmp_path / "c0"))  # fmt: skip
    both = EvalRequest(
        (scored, out), tmp_path / "c1", dataset=tmp_path / "qa.jsonl", scores=("token_f1",)
    )
    same = evaluate_files(both).report
    assert isinstance(same, CompareReport) and same.verdict.startswith("no clear difference")
    assert same.final_a == same.final_b and same.final_pairs == 4


def test_paired_bootstrap_interval_covers_the_mean_and_is_seeded() -> None:
    diffs = [0.1, 0.3, -0.2, 0.5, 0.0, 0.2, 0.4, -0.1]
    first = paired_bootstrap(diffs, resamples=4_000, seed=7)
    assert first == paired_bootstrap(diffs, resamples=4_000, seed=7)
    assert first.mean_diff == pytest.approx(0.15)
    assert first.low < 0.15 < first.high
    assert first.low > -0.2 and first.high < 0.5  # the mean of resamples stays inside the data
    constant = paired_bootstrap([0.25] * 5, resamples=200)
    assert constant.low == constant.high == pytest.approx(0.25) and constant.share_b_better == 1.0


async def test_eval_flow_publishes_table_summary_and_plots_as_artifacts(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    out = await _approaching_run(fake_server, tmp_path)
    state = refine_eval(out, out_dir=tmp_path / "ev", return_state=True)
    files = await state.result()  # type: ignore[union-attr]
    assert len(files) == 5
    async with get_client() as client:
        flow_run = await client.read_flow_run(state.state_details.flow_run_id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    assert flow_run.name == "eval · run.jsonl"
    by_type: dict[str, list[Any]] = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    (table,) = by_type["table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["row"] for r in rows][:3] == ["step 1", "step 2", "step 3"]
    assert rows[0]["token_f1 mean"] == 0.65
    (summary,) = by_type["markdown"]
    assert "4 items (4 ok, 0 failed)" in summary.data and "max_steps: 3" in summary.data
    images = sorted(by_type["image"], key=lambda a: a.key)
    assert [a.key for a in images] == [
        "refine-eval-run-cost-quality", "refine-eval-run-reward-per-step",
        "refine-eval-run-stop-reasons",
    ]  # fmt: skip
    for image in images:
        assert image.data.startswith("data:image/png;base64,") and len(image.data) > 10_000


def _refine(*args: str | Path) -> Any:
    import subprocess

    return subprocess.run(
        [REFINE, "eval", *map(str, args)], capture_output=True, text=True, timeout=120
    )


async def test_cli_eval_prints_the_table_and_refuses_bad_input_clearly(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    out = await _approaching_run(fake_server, tmp_path)
    done = _refine(out, "--out-dir", tmp_path / "cli")
    assert done.returncode == 0, done.stderr
    assert "0.650±" in done.stdout and "0.917±" in done.stdout
    assert "max_steps 3, converged 1" in done.stdout
    assert (tmp_path / "cli" / "reward_per_step.png").is_file()
    assert (tmp_path / "run.eval").exists() is False

    # a run still writing: its torn last line is not read, and nothing else changes
    running = tmp_path / "running.jsonl"
    shutil.copy(out, running)
    with running.open("ab") as fh:
        fh.write(b'{"id": "q9", "status": "o')
    assert _refine(running).returncode == 0
    assert json.loads((tmp_path / "running.eval" / "eval.json").read_text())["items"] == 4

    broken = tmp_path / "broken.jsonl"
    lines = out.read_text().splitlines(keepends=True)
    broken.write_text(lines[0] + "not json\n" + "".join(lines[1:]))
    failed = _refine(broken)
    assert failed.returncode == 2 and f"{broken}:line 2: not valid JSON" in failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "broken.eval").exists()

    unknown = _refine(out, "--reward", "bleu")
    assert unknown.returncode == 2
    assert "'bleu' is not in these records; their rewards: token_f1, exact_match" in unknown.stderr
    judge = _refine(out, "--input", tmp_path / "qa.jsonl", "--score", "judge")
    assert judge.returncode == 2 and "the judge asks the model" in judge.stderr
    loglik = _refine(out, "--input", tmp_path / "qa.jsonl", "--score", "loglik")
    assert loglik.returncode == 2 and "needs the run's token logprobs" in loglik.stderr
    alone = _refine(out, "--score", "bleu")
    assert alone.returncode == 2 and "--score and --input go together" in alone.stderr
    other = write_rows(tmp_path / "other.jsonl", [{"id": "x", "question": "?", "reference": "y"}])
    wrong = _refine(out, "--input", other, "--score", "bleu")
    assert wrong.returncode == 2 and "no row has id 'q" in wrong.stderr
    one = _refine("--compare", out)
    assert one.returncode == 2 and "--compare takes two output files or more" in one.stderr
    missing = _refine(tmp_path / "nope.jsonl")
    assert missing.returncode == 2 and "nope.jsonl: file not found" in missing.stderr.replace(
        "\n", " "
    )


async def test_cli_eval_prefect_runs_the_flow_on_the_configured_server(
    fake_server: FakeOpenAI, tmp_path: Path, prefect_server: PrefectServer
) -> None:
    import subprocess

    out = await _approaching_run(fake_server, tmp_path)
    done = subprocess.run(
        [REFINE, "eval", str(out), "--prefect", "--out-dir", str(tmp_path / "pf")],
        env=cli_env(prefect_server, tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "(and the flow run's artifacts)" in done.stdout
    assert json.loads((tmp_path / "pf" / "eval.json").read_text())["items"] == 4
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async with get_client() as client:  # the session's server, which the command was given
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["eval · run.jsonl"]))
        )
    paths = [run.parameters.get("out_dir") for run in runs]
    assert str(tmp_path / "pf") in paths
    mine = next(run for run in runs if run.parameters.get("out_dir") == str(tmp_path / "pf"))
    assert mine.state_type is not None and mine.state_type.value == "COMPLETED"
