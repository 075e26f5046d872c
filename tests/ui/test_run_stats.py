"""Per-step figures and the sample view, on known output records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.config.run import EndpointConfig, RunConfig
from flows.ui.labels import run_name, run_tags
from flows.ui.run_stats import percentile, read_run_stats
from flows.ui.samples import samples_markdown, word_diff


def draft(step: int, text: str, **extra: Any) -> dict[str, Any]:
    usage = extra.pop("usage", (10, 5))
    return {
        "step": step,
        "text": text,
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "cached_tokens": 0},
        "latency_s": extra.pop("latency_s", 0.1),
        "cached": extra.pop("cached", False),
        "problems": extra.pop("problems", []),
        **extra,
    }


RECORDS: list[dict[str, Any]] = [
    {
        "id": "a",
        "status": "ok",
        "reward": "rouge_l",
        "drafts": [
            draft(1, "the cat sat", latency_s=0.1, rewards={"rouge_l": 0.5, "bleu": 0.1}),
            draft(2, "the black cat sat", latency_s=0.3, rewards={"rouge_l": 0.75}),
        ],
    },
    {
        "id": "b",
        "status": "ok",
        "reward": "rouge_l",
        "drafts": [
            draft(1, "dogs bark", latency_s=0.2, rewards={"rouge_l": 0.25}, problems=["too short"]),
            draft(2, "dogs bark loudly", kind="fix", latency_s=0.5, rewards={"rouge_l": 1.0}),
        ],
    },
    {
        "id": "c",
        "status": "ok",
        "drafts": [
            draft(1, "x", cached=True, latency_s=9.0, usage=(100, 100)),
            draft(
                2,
                "y",
                latency_s=0.4,
                side_requests=[
                    {"role": "critique", "text": "ok", "usage": {"prompt_tokens": 7}},
                    {"role": "judge", "text": "5", "cached": True, "usage": {"prompt_tokens": 99}},
                ],
            ),
        ],
    },
    {"id": "d", "status": "failed", "error": "HTTP 500", "drafts": [draft(1, "z", latency_s=1.0)]},
    {"id": "e", "status": "failed", "error": "HTTP 400", "drafts": []},
]


def write(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([0.1, 0.2, 1.0], 50) == 0.2
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert abs(percentile([0.1, 0.2, 1.0], 95) - 0.92) < 1e-12  # type: ignore[operator]


def test_step_table_from_known_records(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", RECORDS, tail='{"id": "torn"')
    stats = read_run_stats(path)
    assert (stats.records, stats.ok, stats.failed) == (5, 3, 2)
    assert stats.failed_ids == ["d", "e"]
    assert stats.complete_bytes == len(path.read_bytes()) - len('{"id": "torn"')
    rows = {row["step"]: row for row in stats.rows()}
    assert list(rows) == ["step-1", "step-2", "fix-2"]
    assert rows["step-1"] == {
        "step": "step-1",
        "items": 4,  # a, b, c (cached), d
        "mean reward": 0.375,  # the primary reward (rouge_l) of a and b; c and d have none
        "requests": 3,  # a, b and d; c's came from the cache
        "tokens": 45,  # 3 uncached drafts x 15; the cached one costs nothing
        "latency p50 (s)": 0.2,  # of 0.1, 0.2, 1.0: cached drafts have no latency
        "latency p95 (s)": 0.92,
        "cache hits": 1,
        "drafts with problems": 1,
        "failures": 1,  # e failed before any draft
    }
    assert rows["step-2"] == {
        "step": "step-2",
        "items": 2,
        "mean reward": 0.75,
        "requests": 3,  # a, c and c's critique; the cached judge is no request
        "tokens": 15 + 15 + 7,  # a, c and c's uncached critique; the cached judge is free
        "latency p50 (s)": 0.35,
        "latency p95 (s)": 0.395,
        "cache hits": 0,
        "drafts with problems": 0,
        "failures": 1,  # d failed after its step-1 draft
    }
    assert rows["fix-2"]["items"] == 1 and rows["fix-2"]["mean reward"] == 1.0
    assert rows["fix-2"]["latency p50 (s)"] == 0.5


def test_records_without_rewards_or_kind_still_count(tmp_path: Path) -> None:
    old = {"id": "1", "status": "ok", "drafts": [{"step": 1, "text": "t"}]}
    stats = read_run_stats(write(tmp_path / "o.jsonl", [old, {**old, "id": "2"}]))
    assert stats.rows() == [
        {
            "step": "step-1",
            "items": 2,
            "mean reward": None,
            "requests": 2,
            "tokens": 0,
            "latency p50 (s)": 0.0,
            "latency p95 (s)": 0.0,
            "cache hits": 0,
            "drafts with problems": 0,
            "failures": 0,
        }
    ]
    assert read_run_stats(tmp_path / "missing.jsonl").records == 0


def test_best_of_n_steps_count_every_candidate_and_how_often_a_later_one_won(
    tmp_path: Path,
) -> None:
    def sampled(winner: int) -> dict[str, Any]:
        candidates = [
            {"index": i, "text": f"c{i}", "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
            for i in range(3)
        ]
        candidates[1]["cached"] = True  # a cached candidate costs nothing
        return draft(1, f"c{winner}", candidates=candidates, candidate=winner, choice="best")

    records = [
        {"id": "a", "status": "ok", "drafts": [sampled(0), draft(2, "plain")]},
        {"id": "b", "status": "ok", "drafts": [sampled(2)]},
    ]
    rows = {row["step"]: row for row in read_run_stats(write(tmp_path / "o.jsonl", records)).rows()}
    assert rows["step-1"]["candidates per draft"] == 3.0
    assert rows["step-1"]["requests"] == 2 + 2  # three candidates each, one of them cached
    assert rows["step-1"]["winner not candidate 0"] == 1
    # the winner's own request (15) plus the other two candidates: 15 and a cached one (0),
    # except where the cached one won (b: its own request counts, not the cached candidate's)
    assert rows["step-1"]["tokens"] == (15 + 0 + 15) + (15 + 15 + 0)
    assert rows["step-2"]["candidates per draft"] == 1.0  # one sample: the same columns
    assert rows["step-2"]["winner not candidate 0"] == 0


def test_word_diff_marks_removed_and_added_words() -> None:
    assert word_diff("the cat sat", "the black cat sat") == "the **black** cat sat"
    assert word_diff("a b c", "a x c") == "a ~~b~~ **x** c"
    assert word_diff("keep drop", "keep") == "keep ~~drop~~"
    assert word_diff("1*2", "1*2 [x]") == r"1\*2 **\[x\]**"  # markdown in drafts stays literal


def test_samples_markdown_shows_each_step_against_the_previous(tmp_path: Path) -> None:
    stats = read_run_stats(write(tmp_path / "o.jsonl", RECORDS), samples=2)
    assert [r["id"] for r in stats.samples] == ["a", "b"]
    text = samples_markdown(stats.samples, "summarize · data.jsonl")
    assert "### item `a`" in text and "### item `b`" in text
    assert "> the cat sat" in text
    assert "> the **black** cat sat" in text
    assert "**fix-2** · reward rouge\\_l 1" in text
    assert "problems: too short" in text
    assert "No item" in samples_markdown([], "t")


def test_run_name_and_tags_carry_task_dataset_and_model() -> None:
    config = RunConfig(task="summarize", endpoint=EndpointConfig(base_url="http://h", model="m1"))
    assert run_name(Path("/data/reviews.jsonl"), config) == "summarize · reviews.jsonl"
    assert run_tags(config) == ["task:summarize", "model:m1"]
    assert run_tags(RunConfig()) == ["task:generic", "model:local"]


def test_prompt_tokens_the_server_cached_get_a_column_when_a_server_reports_them(
    tmp_path: Path,
) -> None:
    def step(t: int, prompt: int, cached: int) -> dict[str, Any]:
        usage = {"prompt_tokens": prompt, "completion_tokens": 5, "cached_tokens": cached}
        return {"step": t, "text": "t", "usage": usage}

    records = [
        {"id": str(i), "status": "ok", "drafts": [step(1, 100, 10 * i), step(2, 200, 150)]}
        for i in range(2)
    ]
    rows = {row["step"]: row for row in read_run_stats(write(tmp_path / "o.jsonl", records)).rows()}
    assert rows["step-1"]["share of prompt tokens from server cache"] == 0.05  # 10 of 200
    assert rows["step-2"]["share of prompt tokens from server cache"] == 0.75  # 300 of 400
    plain = [{**r, "drafts": [step(1, 100, 0)]} for r in records]  # no server said so
    assert (
        "share of prompt tokens from server cache"
        not in read_run_stats(write(tmp_path / "p.jsonl", plain)).rows()[0]
    )


def test_an_item_failed_by_its_stop_rule_counts_at_its_last_step(tmp_path: Path) -> None:
    """Every draft had problems until max_steps: the failure belongs to the last step that
    ran, not to a step after it (a new user saw a step-4 row in a 3-step run)."""
    record = {
        "id": "x",
        "status": "failed",
        "stop_reason": "max_steps",
        "error": "no usable draft",
        "drafts": [draft(1, "a"), draft(2, "b")],
    }
    rows = {
        row["step"]: row for row in read_run_stats(write(tmp_path / "o.jsonl", [record])).rows()
    }
    assert list(rows) == ["step-1", "step-2"] and rows["step-2"]["failures"] == 1
