"""The cost-quality frontier of ``refine eval --compare A B C``: each run's returned reward
against its tokens per item (every candidate counted), paired intervals against the first run,
and which runs no other run beats on both axes. On output files written to disk, read back by
the real reader, and through the real command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from flows.data.records import Candidate, Draft, Trajectory, Usage
from flows.eval.compare import CompareReport, paired_bootstrap
from flows.eval.frontier import FrontierReport
from flows.eval.run import EvalRequest, evaluate_files
from tests.cli_helpers import REFINE

REWARD = "hidden"
USAGE = Usage(prompt_tokens=80, completion_tokens=20)  # 100 tokens a request


def _draft(step: int, value: float, candidates: int = 0) -> Draft:
    drawn = [
        Candidate(index=i, text=f"c{i}", usage=USAGE, rewards={REWARD: value})
        for i in range(candidates)
    ]
    return Draft(
        step=step,
        text="x",
        usage=USAGE,
        rewards={REWARD: value},
        candidates=drawn,
        candidate=0 if drawn else None,
        choice="the only one" if drawn else None,
    )


def _write(path: Path, runs: list[list[Draft]]) -> Path:
    records = [
        Trajectory(
            id=f"i{n}",
            status="ok",
            output="x",
            drafts=drafts,
            selected_step=drafts[-1].step,
            reward=REWARD,
        )
        for n, drafts in enumerate(runs)
    ]
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    # A refines in 2 steps (200 tokens an item), B draws 3 candidates once (300), C spends 250
    # on two steps and does worse than A: C is beaten on both axes, A and B are not.
    a = _write(tmp_path / "refine.jsonl", [[_draft(1, 0.0), _draft(2, v)] for v in (1, 1, 0, 0)])
    b = _write(tmp_path / "sample.jsonl", [[_draft(1, v, candidates=3)] for v in (1, 1, 1, 0)])
    c = [[_draft(1, 0.0), _draft(2, v)] for v in (1, 0, 0, 0)]
    for drafts in c:
        drafts[1].side_requests = []
        drafts[1].usage = Usage(prompt_tokens=120, completion_tokens=30)
    return a, b, _write(tmp_path / "both.jsonl", c)


def test_each_run_is_a_point_at_its_tokens_with_an_interval_against_the_first(
    runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    a, b, c = runs
    result = evaluate_files(EvalRequest((a, b, c), tmp_path / "cmp", resamples=2_000))
    plane = result.frontier
    assert plane is not None and plane.items == 4 and plane.left_out == 0
    by_name = {Path(s.name).stem: s for s in plane.strategies}
    assert by_name["refine"].tokens_mean == 200 and by_name["refine"].reward_mean == 0.5
    assert by_name["sample"].tokens_mean == 300  # every candidate is paid for
    assert by_name["sample"].reward_mean == 0.75 and by_name["both"].tokens_mean == 250
    assert [s.on_frontier for s in plane.strategies] == [True, True, False]
    assert by_name["refine"].vs_first is None
    expected = paired_bootstrap([0, 0, 1, 0], resamples=2_000, seed=0)
    assert by_name["sample"].vs_first == expected  # the interval --compare A B gives
    assert [(s.step, s.tokens_mean, s.reward_mean) for s in by_name["refine"].steps] == [
        (1, 100, 0.0),
        (2, 200, 0.5),
    ]
    # B and C each against A, then the frontier; every file written
    assert isinstance(result.report, CompareReport) and len(result.more) == 1
    names = sorted(p.name for p in result.files)
    assert "compare-1.json" in names and "compare-2.json" in names
    assert {"frontier.json", "frontier.csv", "frontier.png"} <= set(names)
    saved = FrontierReport.model_validate_json((tmp_path / "cmp" / "frontier.json").read_text())
    assert saved == plane
    assert (tmp_path / "cmp" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_prints_the_frontier_and_writes_its_plot(
    runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    a, b, c = runs
    done = subprocess.run(
        [REFINE, "eval", "--compare", str(a), str(b), str(c), "--out-dir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},  # a table as wide as its paths
    )
    assert done.returncode == 0, done.stderr
    assert "Cost against quality" in done.stdout and "on the frontier" in done.stdout
    rows = [line for line in done.stdout.splitlines() if "sample.jsonl" in line]
    assert any("300" in line and "0.7500" in line and "*" in line for line in rows)
    data = json.loads((tmp_path / "o" / "frontier.json").read_text())
    assert [s["on_frontier"] for s in data["strategies"]] == [True, True, False]


def test_eval_of_a_best_of_n_run_counts_every_candidates_tokens_and_request(
    runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, sample, _ = runs
    report = evaluate_files(EvalRequest((sample,), tmp_path / "one")).report
    (step,) = report.steps  # type: ignore[union-attr]
    assert step.cum_tokens_mean == 300 and step.cum_requests_mean == 3
    rows = (tmp_path / "one" / "eval.csv").read_text().splitlines()
    assert "requests per item (cum)" in rows[0] and ",3.0," in rows[1]
