"""The batch flow against the fake OpenAI server and a real Prefect server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch, refine_one
from flows.config.run import RunConfig
from refine.errors import (
    ConfigError,
    FatalEndpointError,
    InputError,
    MissingFieldsError,
    TemplateError,
)
from tests.batch_helpers import make_config, read_records, task_runs_of, user_prompts, write_rows
from tests.cache_helpers import spoil, stored
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")

TEXTS = {
    "a": "The council voted to close Elm Road to cars on Sundays.",
    "b": "A memory leak in the parser was fixed by freeing the token buffer.",
    "c": "The bakery switched to rye flour and now bakes at 230 degrees.",
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = [{"id": key, "text": text, "reference": f"ref-{key}"} for key, text in TEXTS.items()]
    return write_rows(tmp_path / "data.jsonl", rows)


async def test_each_step_sees_x_and_the_previous_drafts(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "out.jsonl"
    summary = await refine_batch(dataset, out, make_config(fake_server, tmp_path))

    records = {r["id"]: r for r in read_records(out)}
    assert summary.ok == 3 and summary.failed == 0 and summary.http_attempts == 9
    assert len(fake_server.chat_requests()) == 9
    prompts = user_prompts(fake_server)
    for key, text in TEXTS.items():
        record = records[key]
        assert record["status"] == "ok" and record["stop_reason"] == "max_steps"
        assert [d["step"] for d in record["drafts"]] == [1, 2, 3]
        assert record["output"] == record["drafts"][-1]["text"]
        assert all(d["usage"]["prompt_tokens"] > 0 for d in record["drafts"])
        first, second, _ = (d["text"] for d in record["drafts"])
        step2 = [p for p in prompts if text in p and first in p and second not in p]
        step3 = [p for p in prompts if text in p and first in p and second in p]
        assert len(step2) == 1 and len(step3) == 1
        # the stable prefix (x) comes before the drafts, for prefix caching
        assert step3[0].index(text) < step3[0].index(first) < step3[0].index(second)
    # references never reach a prompt
    assert not any("ref-" in json.dumps(e.body) for e in fake_server.chat_requests())


async def test_history_is_bounded_to_the_last_k_drafts(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "out.jsonl"
    await refine_batch(dataset, out, make_config(fake_server, tmp_path, steps=4, history=1))
    record = next(r for r in read_records(out) if r["id"] == "a")
    drafts = [d["text"] for d in record["drafts"]]
    step4 = [p for p in user_prompts(fake_server) if TEXTS["a"] in p and drafts[2] in p]
    assert len(step4) == 1
    assert drafts[0] not in step4[0] and drafts[1] not in step4[0]


async def test_cached_rerun_sends_nothing_and_changes_miss_only_what_changed(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    config = make_config(fake_server, tmp_path)
    await refine_batch(dataset, tmp_path / "first.jsonl", config)
    assert len(fake_server.chat_requests()) == 9

    summary = await refine_batch(dataset, tmp_path / "second.jsonl", config)
    assert len(fake_server.chat_requests()) == 9  # zero new requests
    assert summary.cache_hits == 9 and summary.http_attempts == 0
    second = read_records(tmp_path / "second.jsonl")
    assert all(d["cached"] and d["attempts"] == 0 for r in second for d in r["drafts"])
    assert {r["id"]: r["output"] for r in second} == {
        r["id"]: r["output"] for r in read_records(tmp_path / "first.jsonl")
    }

    # A user override of the refine template changes steps 2 and 3 only.
    templates = tmp_path / "templates" / "summarize"
    templates.mkdir(parents=True)
    (templates / "refine.j2").write_text("Improve this summary of {{ text }}:\n{{ draft }}\n")
    swapped = config.model_copy(update={"template_dirs": [tmp_path / "templates"]})
    await refine_batch(dataset, tmp_path / "third.jsonl", swapped)
    assert len(fake_server.chat_requests()) == 9 + 6
    assert all(p.startswith("Improve this summary") for p in user_prompts(fake_server)[9:])

    # Another sampling parameter misses every key.
    hotter = config.model_copy(
        update={"endpoint": config.endpoint.model_copy(update={"temperature": 0.1})}
    )
    await refine_batch(dataset, tmp_path / "fourth.jsonl", hotter)
    assert len(fake_server.chat_requests()) == 15 + 9
    assert fake_server.chat_requests()[-1].body["temperature"] == 0.1

    # --no-cache reads nothing.
    uncached = config.model_copy(update={"use_cache": False})
    await refine_batch(dataset, tmp_path / "fifth.jsonl", uncached)
    assert len(fake_server.chat_requests()) == 24 + 9


async def test_a_failed_item_never_fails_the_batch(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.script([Reply(status=400, content="prompt too long for context")], match="bakery")
    out = tmp_path / "out.jsonl"
    summary = await refine_batch(dataset, out, make_config(fake_server, tmp_path))
    records = {r["id"]: r for r in read_records(out)}
    assert summary.ok == 2 and summary.failed == 1
    assert records["c"]["status"] == "failed" and records["c"]["stop_reason"] == "error"
    assert "400" in records["c"]["error"] and "prompt too long" in records["c"]["error"]
    bakery = [e for e in fake_server.chat_requests() if "bakery" in json.dumps(e.body)]
    assert len(bakery) == 1  # a 400 is tried once
    assert records["a"]["status"] == "ok" and len(records["a"]["drafts"]) == 3


async def test_a_failure_after_a_good_draft_keeps_that_draft_as_output(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.script([Reply(content="Rye bread now."), Reply(status=400)], match="bakery")
    out = tmp_path / "out.jsonl"
    await refine_batch(dataset, out, make_config(fake_server, tmp_path))
    record = next(r for r in read_records(out) if r["id"] == "c")
    assert record["status"] == "failed" and record["error"].startswith("step 2:")
    assert record["output"] == "Rye bread now." and len(record["drafts"]) == 1


async def test_401_stops_the_run_once(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.fail_rate(401, 1.0)
    out = tmp_path / "out.jsonl"
    config = make_config(fake_server, tmp_path, concurrency=1)
    with pytest.raises(FatalEndpointError) as caught:
        await refine_batch(dataset, out, config)
    assert "401" in str(caught.value) and "API key" in str(caught.value)
    assert len(fake_server.chat_requests()) == 1  # one refusal, no call per item
    assert out.read_text() == ""  # unfinished items are not recorded: a rerun retries them


async def test_missing_template_fields_are_reported_before_any_request(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [
        {"id": "1", "text": "ok"},
        {"id": "2", "body": "x"},
        {"id": "3"},
        {"id": "4", "text": "y"},
    ]
    data = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(MissingFieldsError) as caught:
        await refine_batch(data, tmp_path / "out.jsonl", make_config(fake_server, tmp_path))
    message = str(caught.value)
    assert "line 2" in message and "line 3" in message and "'text'" in message
    assert "line 1," not in message and "line 4" not in message
    assert fake_server.chat_requests() == []
    # the flow run itself ends Failed with that message (what the Prefect UI shows)
    state = await refine_batch(
        data, tmp_path / "out.jsonl", make_config(fake_server, tmp_path), return_state=True
    )
    assert state.is_failed() and "line 2" in (state.message or "")
    assert fake_server.chat_requests() == []


async def test_same_draft_twice_converges(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.script(
        [Reply(content="Elm Road closes."), Reply(content="Elm Road closes.")], match="Elm Road"
    )
    out = tmp_path / "out.jsonl"
    await refine_batch(dataset, out, make_config(fake_server, tmp_path, steps=5))
    record = next(r for r in read_records(out) if r["id"] == "a")
    assert record["stop_reason"] == "converged" and len(record["drafts"]) == 2
    assert record["output"] == "Elm Road closes."


async def test_empty_and_truncated_answers_are_recorded_not_accepted(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.script(
        [
            Reply(content="   "),
            Reply(content="A good summary."),
            Reply(content="Cut", finish_reason="length"),
        ],
        match="Elm Road",
    )
    out = tmp_path / "out.jsonl"
    await refine_batch(dataset, out, make_config(fake_server, tmp_path))
    record = next(r for r in read_records(out) if r["id"] == "a")
    problems = [d["problems"] for d in record["drafts"]]
    assert "empty" in problems[0][0]
    assert problems[1] == []
    assert "finish_reason=length" in problems[2][0]
    assert record["status"] == "ok" and record["output"] == "A good summary."
    # the problems of the last draft reach the next prompt
    step2 = [p for p in user_prompts(fake_server) if "Elm Road" in p][1]
    assert "empty answer" in step2


async def test_chunks_are_step_chains_in_the_prefect_dag(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    out = tmp_path / "out.jsonl"
    state = await refine_batch(
        dataset, out, make_config(fake_server, tmp_path, chunk_size=2, steps=2), return_state=True
    )
    runs = await task_runs_of(state, 4)
    by_name = {run.name: run for run in runs}
    assert set(by_name) == {
        "step-1 [chunk 0]",
        "step-2 [chunk 0]",
        "step-1 [chunk 1]",
        "step-2 [chunk 1]",
    }
    for chunk in (0, 1):
        step2 = by_name[f"step-2 [chunk {chunk}]"]
        upstream = {i.id for inputs in step2.task_inputs.values() for i in inputs}
        assert by_name[f"step-1 [chunk {chunk}]"].id in upstream
        assert by_name[f"step-1 [chunk {1 - chunk}]"].id not in upstream
    assert all(run.state_type.value == "COMPLETED" for run in runs)


async def test_refine_one(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    trajectory = await refine_one({"text": "One item only."}, make_config(fake_server, tmp_path))
    assert trajectory.status == "ok" and len(trajectory.drafts) == 3
    assert "One item only." in json.dumps(fake_server.chat_requests()[0].body)


async def test_the_api_key_reaches_the_server_and_nowhere_else(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    canary = "sk-canary-7f3a9c"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    fake_server.script([Reply(status=400, content="bad request")], match="bakery")
    out = tmp_path / "out.jsonl"
    state = await refine_batch(dataset, out, make_config(fake_server, tmp_path), return_state=True)
    assert {e.headers["authorization"] for e in fake_server.chat_requests()} == {f"Bearer {canary}"}

    flow_run_id = state.state_details.flow_run_id
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        task_runs: list[Any] = []
        for _ in range(100):  # task runs are recorded from events, a moment later
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if len(task_runs) == 3:
                break
            await asyncio.sleep(0.2)
    assert len(task_runs) == 3  # one chunk, three steps
    assert canary not in json.dumps([run.model_dump(mode="json") for run in task_runs])
    assert "endpoint" in json.dumps(flow_run.parameters, default=str)
    assert canary not in json.dumps(flow_run.parameters, default=str)
    assert canary not in json.dumps([log.message for log in logs])
    assert canary not in out.read_text()
    cache_entries = stored(tmp_path / "cache")
    assert len(cache_entries) == 6  # two items x 3 steps; the failed request is not cached
    assert not any(canary.encode() in value for value in cache_entries.values())
    assert canary.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir())


def test_chunk_plan_keeps_task_runs_bounded_and_slots_busy() -> None:
    from flows.batch import MAX_TASK_RUNS, plan_chunks

    small = RunConfig(steps=3, chunk_size=50, concurrency=64)
    assert plan_chunks(small, 1_000) == (50, 4)  # 2 x 64 items in flight, plus one chunk
    huge = plan_chunks(small, 200_000)
    # up to two tasks (step-t and fix-t) per chunk and step
    assert huge[0] == 240 and 200_000 / huge[0] * 3 * 2 <= MAX_TASK_RUNS
    assert plan_chunks(small.model_copy(update={"chunks_in_flight": 7}), 10)[1] == 7
    # by default a chunk holds as many items as there are request slots, 10 to 100
    assert plan_chunks(RunConfig(concurrency=64), 1_000) == (64, 3)
    assert plan_chunks(RunConfig(concurrency=4), 1_000) == (10, 2)
    assert plan_chunks(RunConfig(concurrency=500), 1_000) == (100, 11)


async def test_csv_input_and_configured_language_defaults(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = tmp_path / "data.csv"
    data.write_text(
        "id,text,target_lang,reference\n"
        "t1,The library opens at nine.,German,Die Bibliothek\n"
        "t2,Bring an umbrella tomorrow.,,Traiga\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    config = make_config(fake_server, tmp_path, task="translate", steps=1, target_lang="Spanish")
    summary = await refine_batch(data, out, config)
    assert summary.ok == 2
    prompts = {p for e in fake_server.chat_requests() for p in [json.dumps(e.body)]}
    german = [p for p in prompts if "library opens" in p]
    spanish = [p for p in prompts if "umbrella" in p]
    assert "German" in german[0] and "Spanish" not in german[0]
    # an empty CSV cell takes the configured default, like a missing one
    assert "Spanish" in spanish[0]
    assert not any("Die Bibliothek" in p or "Traiga" in p for p in prompts)


async def test_two_empty_answers_in_a_row_are_not_convergence(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.script(
        [Reply(content=""), Reply(content=""), Reply(content="Fine.")], match="Elm Road"
    )
    out = tmp_path / "out.jsonl"
    await refine_batch(dataset, out, make_config(fake_server, tmp_path))
    record = next(r for r in read_records(out) if r["id"] == "a")
    assert record["stop_reason"] == "max_steps" and record["output"] == "Fine."


async def test_a_damaged_cache_entry_is_a_miss_never_an_answer(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    config = make_config(fake_server, tmp_path)
    await refine_batch(dataset, tmp_path / "first.jsonl", config)
    for key, value in stored(tmp_path / "cache").items():
        answer = json.loads(value)
        answer["usage"]["prompt_tokens"] = "lots"  # a JSON object, of the wrong shape
        answer["content"] = 42
        spoil(tmp_path / "cache", key, json.dumps(answer).encode())
    summary = await refine_batch(dataset, tmp_path / "second.jsonl", config)
    assert summary.cache_hits == 0 and summary.ok == 3
    assert len(fake_server.chat_requests()) == 18
    assert read_records(tmp_path / "second.jsonl")[0]["drafts"][0]["text"].startswith("draft-")


def explode_on_bakery(text: str) -> str:
    """A user cleaner that fails on one answer."""
    if "bakery" in text:
        raise ValueError("cannot clean this one")
    return text.strip()


def return_a_number(text: str) -> int:
    """A user cleaner that breaks the contract on every answer."""
    return len(text)


async def test_a_cleaner_failing_on_one_answer_fails_that_item_only(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    fake_server.script([Reply(content="The bakery bakes rye.")], match="bakery")
    config = make_config(fake_server, tmp_path, postprocess=[f"{__name__}:explode_on_bakery"])
    out = tmp_path / "out.jsonl"
    summary = await refine_batch(dataset, out, config)
    records = {r["id"]: r for r in read_records(out)}
    assert summary.ok == 2 and records["c"]["status"] == "failed"
    assert (
        "post-processing failed" in records["c"]["error"]
        and "cannot clean" in records["c"]["error"]
    )


async def test_a_cleaner_that_breaks_its_contract_stops_the_run(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    config = make_config(fake_server, tmp_path, postprocess=[f"{__name__}:return_a_number"])
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match="must return str"):
        await refine_batch(dataset, out, config)
    assert out.read_text() == ""  # nothing recorded: a fixed config reruns every item
    assert len(fake_server.chat_requests()) <= 3  # the first step's requests, no more


async def test_bad_demos_and_templates_are_found_before_any_request(
    fake_server: FakeOpenAI, tmp_path: Path, dataset: Path
) -> None:
    demos = tmp_path / "demos.jsonl"
    demos.write_text('{"output": "a summary without its text"}\n')
    config = make_config(fake_server, tmp_path, examples_path=demos)
    with pytest.raises(InputError, match="line 1, field 'text'"):
        await refine_batch(dataset, tmp_path / "out.jsonl", config)
    broken = tmp_path / "templates" / "summarize"
    broken.mkdir(parents=True)
    (broken / "refine.j2").write_text("{{ text }} {{ drafts[0].upper().nope() }}")
    config = make_config(fake_server, tmp_path, template_dirs=[tmp_path / "templates"])
    with pytest.raises(TemplateError, match="refine.j2"):
        await refine_batch(dataset, tmp_path / "out2.jsonl", config)
    assert fake_server.chat_requests() == []


async def test_refine_one_checks_its_fields_first(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(MissingFieldsError, match="'text'"):
        await refine_one({"body": "no text field"}, make_config(fake_server, tmp_path))
    assert fake_server.chat_requests() == []


async def test_a_model_that_answers_nothing_stops_the_run_with_the_likely_causes(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    """Issue 14: the alpaca template plus a ``###`` stop made every instruct model's first
    token the stop; the run shipped a failure per item. Now the first empty answers stop it."""
    rows = [{"id": str(i), "text": f"Story number {i}."} for i in range(8)]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script([Reply(content="")] * 50)
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError) as caught:
        await refine_batch(data, out, make_config(fake_server, tmp_path, concurrency=1))
    message = str(caught.value)
    assert "empty answer for each of the first 5 items" in message
    assert "chat template or stop sequences" in message
    assert len(fake_server.chat_requests()) == 5  # no request after the fifth
    assert out.read_text() == ""  # nothing shipped: a rerun after the fix starts clean


async def test_some_empty_answers_do_not_stop_the_run(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [{"id": str(i), "text": f"Story number {i}."} for i in range(6)]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script([Reply(content="A story.")] + [Reply(content="")] * 50)
    out = tmp_path / "out.jsonl"
    config = make_config(fake_server, tmp_path, concurrency=1, steps=1)
    await refine_batch(data, out, config)
    assert [r["status"] for r in read_records(out)].count("failed") == 5
