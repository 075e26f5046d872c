"""Best-of-N inside a step (``samples``): candidates over real HTTP against the fake server and
a real Prefect server: seeds or ``n``, the winner, the cache per sample index, budgets, early
exit, and the refusal of temperature 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch
from flows.config.run import build_run_config
from flows.data.records import Draft, Trajectory
from flows.loop.candidates import choose_candidate
from flows.ui.run_stats import read_run_stats
from refine.errors import ConfigError
from tests.batch_helpers import make_config, read_records, write_rows
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")

VALID = '{"city": "Paris"}'
USAGE_110 = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
ROWS = [{"id": "j", "input": "Give the city of the Eiffel Tower as JSON."}]


def _json_run(server: FakeOpenAI, tmp_path: Path, **changes: Any) -> Any:
    """A one-step generic run validated as JSON, drawing 3 candidates unless told otherwise."""
    base: dict[str, Any] = {
        "task": "generic",
        "steps": 1,
        "samples": 3,
        "validators": ["json"],
        "stop": {"stop_when_valid": True},
    }
    if changes.get("validators") == []:
        base["stop"] = {}
    return make_config(server, tmp_path, **{**base, **changes})


def _seeds(server: FakeOpenAI) -> list[Any]:
    return sorted(entry.body.get("seed") for entry in server.chat_requests())


async def test_candidates_carry_distinct_seeds_and_the_valid_one_wins_when_it_comes_last(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(content="not json")], match="seed=0")
    fake_server.script([Reply(content="{broken")], match="seed=1")
    fake_server.script([Reply(content=VALID)], match="seed=2")
    out = tmp_path / "out.jsonl"
    await refine_batch(data, out, _json_run(fake_server, tmp_path))

    assert _seeds(fake_server) == [0, 1, 2]
    (record,) = read_records(out)
    assert record["status"] == "ok" and record["output"] == VALID
    (draft,) = record["drafts"]
    assert draft["candidate"] == 2 and "only one" in draft["choice"]
    assert [c["index"] for c in draft["candidates"]] == [0, 1, 2]
    assert [c["seed"] for c in draft["candidates"]] == [0, 1, 2]
    assert [bool(c["problems"]) for c in draft["candidates"]] == [True, True, False]
    assert draft["problems"] == [] and draft["text"] == VALID


async def test_the_seed_of_the_endpoint_moves_each_candidates_seed(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    config = _json_run(fake_server, tmp_path, endpoint={"seed": 40}, validators=[])
    await refine_batch(data, tmp_path / "out.jsonl", config)
    assert _seeds(fake_server) == [40, 41, 42]


async def test_the_cache_serves_each_sample_to_its_own_index_on_a_rerun(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    config = _json_run(fake_server, tmp_path, validators=[], steps=2, samples=[3, 2])
    await refine_batch(data, tmp_path / "first.jsonl", config)
    sent = len(fake_server.chat_requests())
    assert sent == 3 + 2
    await refine_batch(data, tmp_path / "again.jsonl", config)
    assert len(fake_server.chat_requests()) == sent  # nothing asked again

    (first,) = read_records(tmp_path / "first.jsonl")
    (again,) = read_records(tmp_path / "again.jsonl")
    for before, after in zip(first["drafts"], again["drafts"], strict=True):
        texts = [c["text"] for c in before["candidates"]]
        assert len(set(texts)) == len(texts)  # distinct seeds: distinct answers
        assert [c["text"] for c in after["candidates"]] == texts  # each back in its place
        assert all(c["cached"] for c in after["candidates"])
        assert after["candidate"] == before["candidate"]


async def test_a_list_of_samples_sets_each_steps_count(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(content=f"still not json {i}") for i in range(10)])
    config = _json_run(fake_server, tmp_path, steps=3, samples=[3, 1])
    await refine_batch(data, tmp_path / "out.jsonl", config)

    (record,) = read_records(tmp_path / "out.jsonl")
    assert [len(d.get("candidates", [])) for d in record["drafts"]] == [3, 0, 0]
    assert "candidate" not in record["drafts"][1]  # a one-sample step keeps its old shape
    assert len(fake_server.chat_requests()) == 3 + 1 + 1


async def test_budgets_and_the_summary_count_every_candidate(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(content=f"draft {i}", usage=USAGE_110) for i in range(20)])
    config = _json_run(
        fake_server, tmp_path, validators=[], steps=4, stop={"max_tokens_per_item": 300}
    )
    summary = await refine_batch(data, tmp_path / "out.jsonl", config)

    (raw,) = read_records(tmp_path / "out.jsonl")
    record = Trajectory.model_validate(raw)
    # one sample's 110 tokens would leave room for two more steps; three candidates spend it
    assert record.stop_reason == "token_budget" and len(record.drafts) == 1
    assert record.usage.tokens == 330 == record.drafts[0].total_usage.tokens
    assert summary.prompt_tokens == 300 and summary.completion_tokens == 30
    assert len(fake_server.chat_requests()) == 3


async def test_stop_sampling_when_valid_sends_fewer_requests(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(content="nope")], match="seed=0")
    fake_server.script([Reply(content=VALID)], match="seed=1")
    config = _json_run(fake_server, tmp_path, samples=4, stop_sampling_when_valid=True)
    await refine_batch(data, tmp_path / "out.jsonl", config)

    assert _seeds(fake_server) == [0, 1]  # candidates 2 and 3 were never drawn
    (record,) = read_records(tmp_path / "out.jsonl")
    (draft,) = record["drafts"]
    assert len(draft["candidates"]) == 2 and draft["candidate"] == 1
    assert "2 of up to 4 drawn, then stopped as it passed every validator" in draft["choice"]
    assert record["output"] == VALID
    # one after another: the step's time on the wire is the sum of its candidates'
    assert draft["latency_s"] == pytest.approx(sum(c["latency_s"] for c in draft["candidates"]))

    fake_server.clear_log()  # the same run without the early exit draws all four
    fake_server.script([Reply(content="nope")], match="seed=0")
    config = _json_run(fake_server, tmp_path, samples=4, use_cache=False)
    await refine_batch(data, tmp_path / "all.jsonl", config)
    assert _seeds(fake_server) == [0, 1, 2, 3]


async def test_a_budget_spent_part_way_stops_drawing_candidates_one_at_a_time(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(content=f"nope {i}", usage=USAGE_110) for i in range(4)])
    config = _json_run(
        fake_server,
        tmp_path,
        steps=3,
        samples=4,
        stop_sampling_when_valid=True,
        stop={"stop_when_valid": True, "max_tokens_per_item": 150},
    )
    await refine_batch(data, tmp_path / "out.jsonl", config)
    assert _seeds(fake_server) == [0, 1]  # 220 tokens after two: no third candidate
    (record,) = read_records(tmp_path / "out.jsonl")
    assert len(record["drafts"][0]["candidates"]) == 2
    assert record["stop_reason"] == "token_budget"


async def test_with_n_one_request_brings_every_candidate_and_each_is_cached(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(content="no"), Reply(content="nor this"), Reply(content=VALID)])
    config = _json_run(fake_server, tmp_path, endpoint={"supports_n": True})
    await refine_batch(data, tmp_path / "out.jsonl", config)

    (request,) = fake_server.chat_requests()
    assert request.body["n"] == 3 and "seed" not in request.body
    (record,) = read_records(tmp_path / "out.jsonl")
    (draft,) = record["drafts"]
    assert [c["text"] for c in draft["candidates"]] == ["no", "nor this", VALID]
    assert draft["candidate"] == 2 and all(c["seed"] is None for c in draft["candidates"])
    assert [c["shared_request"] for c in draft["candidates"]] == [False, True, True]
    assert Draft.model_validate(draft).request_count() == 1  # what eval and the UI count
    rows = read_run_stats(tmp_path / "out.jsonl").rows()
    assert rows[0]["requests"] == 1 and rows[0]["candidates per draft"] == 3
    tokens = [c["usage"] for c in draft["candidates"]]
    assert tokens[0]["prompt_tokens"] > 0 and tokens[1]["prompt_tokens"] == 0  # read once
    assert sum(t["completion_tokens"] for t in tokens) == 1 + 2 + 2  # the server's count

    await refine_batch(data, tmp_path / "again.jsonl", config)
    assert len(fake_server.chat_requests()) == 1  # all three from the cache
    (again,) = read_records(tmp_path / "again.jsonl")
    assert [c["text"] for c in again["drafts"][0]["candidates"]] == ["no", "nor this", VALID]
    assert [c["shared_request"] for c in again["drafts"][0]["candidates"]] == [False, True, True]
    assert Draft.model_validate(again["drafts"][0]).request_count() == 1  # still one request

    # one more candidate later: asked on its own with its own seed, never a second n request
    # (whose choices would repeat the first one's)
    more = _json_run(fake_server, tmp_path, samples=4, endpoint={"supports_n": True})
    await refine_batch(data, tmp_path / "more.jsonl", more)
    _, fourth = fake_server.chat_requests()
    assert fourth.body["seed"] == 3 and "n" not in fourth.body
    (grown,) = read_records(tmp_path / "more.jsonl")
    texts = [c["text"] for c in grown["drafts"][0]["candidates"]]
    assert texts[:3] == ["no", "nor this", VALID] and texts[3] not in texts[:3]
    assert grown["drafts"][0]["candidates"][3]["seed"] == 3


async def test_a_failed_request_with_n_is_kept_as_a_candidate_and_nothing_more_is_asked(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(status=500, content="down")] * 3)  # every attempt of one request
    config = _json_run(fake_server, tmp_path, endpoint={"supports_n": True})
    summary = await refine_batch(data, tmp_path / "out.jsonl", config)
    assert summary.failed == 1 and len(fake_server.chat_requests()) == 3  # its 3 attempts
    (record,) = read_records(tmp_path / "out.jsonl")
    (draft,) = record["drafts"]
    (failed,) = draft["candidates"]
    assert "request failed" in failed["problems"][0] and "500" in failed["problems"][0]
    assert "the one request with n failed" in draft["choice"]


async def test_an_item_whose_every_candidate_failed_keeps_them_in_its_record(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(status=400, content=f"refused {i}") for i in range(3)])
    summary = await refine_batch(data, tmp_path / "out.jsonl", _json_run(fake_server, tmp_path))
    assert summary.failed == 1
    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["status"] == "failed" and "400" in record["error"]
    (draft,) = record["drafts"]
    assert len(draft["candidates"]) == 3
    assert all("request failed" in c["problems"][0] for c in draft["candidates"])


async def test_a_candidate_whose_request_failed_is_kept_and_another_wins(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    fake_server.script([Reply(status=400, content="bad seed")], match="seed=0")
    fake_server.script([Reply(content=VALID)], match="seed=1")
    fake_server.script([Reply(content="nope")], match="seed=2")
    await refine_batch(data, tmp_path / "out.jsonl", _json_run(fake_server, tmp_path))

    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["status"] == "ok" and record["output"] == VALID
    first = record["drafts"][0]["candidates"][0]
    assert "request failed" in first["problems"][0] and "400" in first["problems"][0]


@pytest.mark.parametrize("one_at_a_time", [False, True], ids=["at-once", "one-at-a-time"])
async def test_a_crashing_validator_fails_the_item_and_keeps_every_candidate_drawn(
    fake_server: FakeOpenAI, tmp_path: Path, one_at_a_time: bool
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "bad", "input": "boom"}])
    validator = "tests.loop.test_loop:explode_on_boom"  # raises on the row "boom"
    config = _json_run(
        fake_server,
        tmp_path,
        validators=[validator],
        stop_sampling_when_valid=one_at_a_time,
    )
    summary = await refine_batch(data, tmp_path / "out.jsonl", config)
    assert summary.failed == 1
    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["stop_reason"] == "error" and "cannot judge boom" in record["error"]
    candidates = record["drafts"][0]["candidates"]
    assert "checks of this draft failed" in candidates[0]["problems"][0]
    # drawn at once, all three were paid for and are kept; one at a time, none after it
    assert len(candidates) == (1 if one_at_a_time else 3)
    assert len(fake_server.chat_requests()) == len(candidates)


async def test_the_highest_reward_wins_and_a_tie_goes_to_the_later_index(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    reference = "The council closed Elm Road to cars on Sundays."
    rows = [{"id": "a", "text": "The council voted to close Elm Road.", "reference": reference}]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script([Reply(content="Elm Road is a road.")], match="seed=0")
    fake_server.script([Reply(content=reference)], match="seed=1")
    fake_server.script([Reply(content="Something else.")], match="seed=2")
    config = make_config(fake_server, tmp_path, steps=1, samples=3)  # summarize: rouge_l
    await refine_batch(data, tmp_path / "out.jsonl", config)
    (record,) = read_records(tmp_path / "out.jsonl")
    draft = record["drafts"][0]
    assert draft["candidate"] == 1 and record["output"] == reference
    assert "highest rouge_l" in draft["choice"]

    tied = [Draft(step=1, text=t, rewards={"r": 0.5}) for t in ("a", "b", "c")]
    tied[0].rewards["r"] = 0.9
    tied[2].rewards["r"] = 0.9
    assert choose_candidate(tied, "r")[0] == 2  # 0 and 2 tie: the later index
    assert "tied with candidate 0" in choose_candidate(tied, "r")[1]


def test_more_than_one_sample_at_temperature_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="temperature above 0"):
        build_run_config({"samples": 3, "endpoint": {"temperature": 0}})
    with pytest.raises(ConfigError, match="temperature above 0"):
        build_run_config({"samples": [1, 2], "endpoint": {"temperature": 0}})
    assert build_run_config({"samples": [1, 1], "endpoint": {"temperature": 0}}).samples_at(2) == 1
    with pytest.raises(ConfigError, match="from 1 to 64") as refused:
        build_run_config({"samples": [3, 0]})
    assert "Value error" not in str(refused.value)


def test_the_temperature_conflict_names_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("samples = [1, 3]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        build_run_config({"endpoint": {"temperature": 0}}, config)
    message = str(refused.value)
    assert f"samples (from {config})" in message
    assert "endpoint.temperature (from command line)" in message
    assert "3 candidates at step 2" in message and "(root)" not in message


async def test_stop_sampling_when_valid_without_a_validator_is_refused(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", ROWS)
    config = _json_run(fake_server, tmp_path, validators=[], stop_sampling_when_valid=True)
    with pytest.raises(ConfigError, match="stop_sampling_when_valid needs a validator"):
        await refine_batch(data, tmp_path / "out.jsonl", config)
    assert fake_server.chat_requests() == []


def test_choose_candidate_prefers_no_problems_over_any_reward() -> None:
    bad = Draft(step=1, text="x", problems=["invalid"], rewards={"r": 1.0})
    good = Draft(step=1, text="y", rewards={"r": 0.1})
    assert choose_candidate([good, bad], "r")[0] == 0
    unscored = Draft(step=1, text="z")
    assert choose_candidate([good, unscored], "r")[0] == 0  # a score beats none
    index, why = choose_candidate([bad, bad.model_copy()], "r")
    assert index == 1 and "none of the 2 candidates is usable" in why
    worse = Draft(step=1, text="w", problems=["invalid"], rewards={"r": 0.5})
    index, why = choose_candidate([bad, worse], "r")  # none usable: still the higher reward
    assert index == 0 and "the highest r (1) is kept" in why
    index, why = choose_candidate([bad, worse, bad.model_copy()], "r")
    assert index == 2 and why.endswith("tied with candidate 0: the latest wins")
    assert choose_candidate([good], "r") == (0, "the one candidate drawn has no problems")
