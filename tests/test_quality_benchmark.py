"""benchmarks/quality.py end to end on the fake server, and HumanEval's visible-test extraction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.humaneval import (
    build_rows,
    candidate_asserts,
    extract_visible_tests,
    hidden_tests,
    load_problems,
)
from benchmarks.quality import subset
from postprocess.rewards import RewardDraft
from postprocess.sandbox.checks import SandboxTests
from postprocess.sandbox.hidden import HiddenTests
from tests.cli_helpers import cli_env
from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer

ROOT = Path(__file__).resolve().parents[1]


def _fenced(code: str) -> str:
    return f"```python\n{code}```"


def test_docstring_examples_become_asserts_in_each_style() -> None:
    problems = {p.task_id: p for p in load_problems()}
    assert "assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False" in candidate_asserts(
        problems["HumanEval/0"]
    )  # >>> call, then its output line
    assert "assert longest([]) is None" in candidate_asserts(problems["HumanEval/12"])
    assert "assert fix_spaces('Example 1') == 'Example_1'" in candidate_asserts(
        problems["HumanEval/140"]
    )  # call == expected
    assert "assert iscube(64) == True" in candidate_asserts(problems["HumanEval/77"])  # ==>
    found = extract_visible_tests(problems["HumanEval/47"])  # the docstring's median is wrong
    assert found.dropped == ["assert median([-10, 4, 6, 1000, 10, 20]) == 15.0"]
    assert found.kept == ["assert median([3, 1, 2, 4, 5]) == 3"]


@pytest.mark.slow
def test_extraction_counts_on_all_164_and_hidden_tests_pass_only_the_canonical_solution() -> None:
    problems = load_problems()
    rows, found = build_rows(problems)
    assert len(rows) == 164
    assert sum(bool(f.kept) for f in found.values()) == 139
    assert sum(len(f.kept) for f in found.values()) == 402
    assert sum(len(f.dropped) for f in found.values()) == 17
    assert sum("tests" not in row for row in rows) == 25
    reward = HiddenTests(SandboxTests()).reward()
    for problem in problems[:20]:
        row = {"reference": hidden_tests(problem)}
        assert reward(RewardDraft(problem.prompt + problem.canonical_solution), row) == 1.0
        assert reward(RewardDraft(problem.prompt + "    return None\n"), row) == 0.0


@pytest.mark.slow
def test_the_benchmark_runs_on_the_fake_server_and_counts_rescues_and_failures(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    problems = subset(load_problems(), 5, 0)
    right_first = problems[0]
    rescued = next(
        p for p in problems[1:] if extract_visible_tests(p).kept
    )  # fix steps quote its failing visible tests
    fake_server.script(
        [Reply(content=_fenced(right_first.prompt + right_first.canonical_solution))],
        f"def {right_first.entry_point}(",
    )
    wrong = f"def {rescued.entry_point}(*args, **kwargs):\n    return None\n"
    right = rescued.prompt + rescued.canonical_solution
    fake_server.script(
        [Reply(content=_fenced(wrong)), Reply(content=_fenced(right))],
        f"def {rescued.entry_point}(",
    )  # the other three get the fake's echo, which is no code: failed items
    figures = tmp_path / "figures.json"
    args = ["--limit", "5", "--seed", "0", "--steps", "2", "--base-url", fake_server.base_url]
    args += ["--model", "m", "--work-dir", str(tmp_path / "work"), "--json", str(figures)]
    command = [sys.executable, "-m", "benchmarks.quality", *args]
    env = cli_env(prefect_server, tmp_path)
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("dataset: 5 problems")
    assert "$ python -m benchmarks.quality --limit 5" in result.stdout
    assert "--reward test_pass_rate --reward hidden_test_pass_rate --temperature 0" in (
        result.stdout
    )
    assert "anchor: Qwen2.5-Coder-0.5B-Instruct 61.6" in result.stdout
    fig = json.loads(figures.read_text())
    assert fig["n"] == 5 and fig["failed"] == 3  # failed items count as hidden failures
    assert [row["pass@1"] for row in fig["steps"]] == [0.2, 0.4]
    assert fig["selections"] == {"last": 0.4, "best": 0.4, "output": 0.4}
    assert fig["rescues"] == 1 and fig["regressions_output"] == 0
    assert fig["gain"]["mean"] == pytest.approx(0.2)
    for entry in fake_server.chat_requests():  # HumanEval's own tests never reach the model
        assert "def check(candidate)" not in json.dumps(entry.body)
    requests = len(fake_server.chat_requests())

    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert len(fake_server.chat_requests()) == requests  # resumed: nothing asked twice
    assert json.loads(figures.read_text())["selections"] == fig["selections"]


@pytest.mark.slow
def test_best_of_n_on_the_benchmark_counts_candidates_and_the_oracle(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    (problem,) = subset(load_problems(), 1, 3)
    right = problem.prompt + problem.canonical_solution
    fake_server.script([Reply(content=_fenced(right))], match="seed=1")  # candidate 1 only
    figures = tmp_path / "figures.json"
    args = ["--limit", "1", "--seed", "3", "--steps", "1", "--samples", "2"]
    args += ["--temperature", "0.7", "--base-url", fake_server.base_url, "--model", "m"]
    args += ["--work-dir", str(tmp_path / "work"), "--json", str(figures)]
    command = [sys.executable, "-m", "benchmarks.quality", *args]
    env = cli_env(prefect_server, tmp_path)
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--temperature 0.7" in result.stdout and "--samples 2" in result.stdout
    fig = json.loads(figures.read_text())
    assert fig["selections"]["output"] == 1.0  # candidate 0 (the fake's echo) is no code
    assert fig["requests_per_item"] == 2
    assert fig["best_of_n"] == {
        "steps_with_candidates": 1,
        "candidates_drawn": 2,
        "winner_not_candidate_0": 1,
        "candidate_0_beaten": 1,
        "step1_oracle_pass": 1.0,
        "step1_candidate_0_pass": 0.0,
    }
    assert sorted(e.body["seed"] for e in fake_server.chat_requests()) == [0, 1]
