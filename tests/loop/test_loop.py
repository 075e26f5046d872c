"""The refinement loop end to end: validators and fix steps, critique, rewards, stop rules and
selection, against the fake OpenAI server over real HTTP and a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch
from tests.batch_helpers import make_config, read_records, task_runs_of, user_prompts, write_rows
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")


async def test_invalid_json_is_fixed_in_a_fix_task_after_seeing_its_problems(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [
        {"id": "j", "input": "Give the city and country of the Eiffel Tower as JSON."},
        {"id": "k", "input": "Give the colour of the sky as JSON."},
    ]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script(  # first: the fix prompt holds "Eiffel" too
        [Reply(content='```json\n{"city": "Paris", "country": "France"}\n```')],
        match="Write a corrected answer",
    )
    fake_server.script([Reply(content='{"city": "Paris", "country": "France"')], match="Eiffel")
    fake_server.script([Reply(content='{"sky": "blue"}')], match="colour of the sky")
    config = make_config(
        fake_server,
        tmp_path,
        task="generic",
        validators=["json"],
        stop={"stop_when_valid": True},
        chunk_size=2,
    )
    out = tmp_path / "out.jsonl"
    state = await refine_batch(data, out, config, return_state=True)

    records = {r["id"]: r for r in read_records(out)}
    record = records["j"]
    assert record["status"] == "ok" and record["stop_reason"] == "valid"
    assert json.loads(record["output"]) == {"city": "Paris", "country": "France"}
    first, second = record["drafts"]
    assert first["kind"] == "draft" and second["kind"] == "fix"
    assert first["problems"] and "JSON" in first["problems"][0]
    assert second["problems"] == [] and record["selected_step"] == 2
    eiffel = [p for p in user_prompts(fake_server) if "Eiffel" in p]
    assert len(eiffel) == 2
    assert first["problems"][0] in eiffel[1]  # the fix request shows the problems
    assert "Write a corrected answer" in eiffel[1]  # rendered from generic/fix.j2
    assert records["k"]["stop_reason"] == "valid" and len(records["k"]["drafts"]) == 1

    runs = await task_runs_of(state, 2)
    names = {run.name: run for run in runs}
    assert set(names) == {"step-1 [chunk 0]", "fix-2 [chunk 0]"}
    upstream = {i.id for inputs in names["fix-2 [chunk 0]"].task_inputs.values() for i in inputs}
    assert names["step-1 [chunk 0]"].id in upstream


async def test_best_returns_an_earlier_step_when_a_later_one_scores_lower(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    reference = "The council closed Elm Road to cars on Sundays."
    text = "The council voted on Monday to close Elm Road to cars on Sundays from June."
    data = write_rows(tmp_path / "data.jsonl", [{"id": "a", "text": text, "reference": reference}])
    answers = [reference, "Elm Road is a road.", "Something else entirely happened."]
    fake_server.script([Reply(content=a) for a in answers], match="Elm Road")
    out = tmp_path / "best.jsonl"
    await refine_batch(data, out, make_config(fake_server, tmp_path, select="best"))

    (record,) = read_records(out)
    scores = [d["rewards"]["rouge_l"] for d in record["drafts"]]
    assert scores[0] == 1.0 and scores[1] < 1.0 and scores[2] < scores[1]
    assert record["output"] == reference and record["selected_step"] == 1
    assert record["reward"] == "rouge_l"
    assert record["total_reward"] == pytest.approx(sum(scores), abs=1e-5)

    # the same answers under "last" give the worse, later draft
    fake_server.script([Reply(content=a) for a in answers], match="Elm Road")
    last = tmp_path / "last.jsonl"
    config = make_config(fake_server, tmp_path, select="last", use_cache=False)
    await refine_batch(data, last, config)
    (record,) = read_records(last)
    assert record["output"] == answers[2] and record["selected_step"] == 3


async def test_rewards_per_step_and_unavailable_without_a_reference(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [
        {"id": "ref", "text": "The bakery now bakes rye bread.", "reference": "Rye bread now."},
        {"id": "noref", "text": "The ferry stops on Sundays."},
    ]
    data = write_rows(tmp_path / "data.jsonl", rows)
    out = tmp_path / "out.jsonl"
    config = make_config(fake_server, tmp_path, steps=2, rewards=["rouge_l", "bleu"])
    await refine_batch(data, out, config)

    records = {r["id"]: r for r in read_records(out)}
    scored = records["ref"]
    assert [list(d["rewards"]) for d in scored["drafts"]] == [["rouge_l", "bleu"]] * 2
    assert all(0.0 <= d["rewards"]["rouge_l"] <= 1.0 for d in scored["drafts"])
    total = sum(d["rewards"]["rouge_l"] for d in scored["drafts"])
    assert scored["total_reward"] == pytest.approx(total, abs=1e-5)
    unscored = records["noref"]
    assert unscored["status"] == "ok" and unscored["total_reward"] is None
    for draft in unscored["drafts"]:
        assert draft["rewards"] == {}
        assert draft["reward_notes"] == [
            "reward rouge_l unavailable: the item has no reference",
            "reward bleu unavailable: the item has no reference",
        ]


async def test_critique_feeds_the_next_step_and_its_stop_phrase_ends_the_item(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "c", "input": "Name a prime above 50."}])
    fake_server.script([Reply(content="51")], match="Respond to the input above")
    fake_server.script(
        [Reply(content="51 = 3 x 17 is not prime."), Reply(content="No issues.")],
        match="Review this draft critically",
    )
    fake_server.script([Reply(content="53")], match="Write a better answer")
    config = make_config(fake_server, tmp_path, task="generic", steps=5, critique={"enabled": True})
    out = tmp_path / "out.jsonl"
    await refine_batch(data, out, config)

    (record,) = read_records(out)
    assert record["stop_reason"] == "critic_satisfied" and record["output"] == "53"
    first, second = record["drafts"]
    assert first["critique"] == "51 = 3 x 17 is not prime." and second["critique"] == "No issues."
    prompts = user_prompts(fake_server)
    assert len(prompts) == 4  # draft, critique, draft, critique
    assert "51 = 3 x 17 is not prime." in prompts[2]  # the feedback reaches step 2
    assert "NO ISSUES" in prompts[1]  # the critique template asks for the stop phrase
    critique = first["side_requests"][0]
    assert critique["role"] == "critique" and critique["usage"]["prompt_tokens"] > 0
    # critique requests have no system message: they are requests of their own
    assert [m["role"] for m in fake_server.chat_requests()[1].body["messages"]] == ["user"]


async def test_token_budgets_stop_items_and_the_run(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    rows = [{"id": str(i), "input": f"Question {i}?"} for i in range(3)]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script([Reply(content=f"answer {n}", usage=usage) for n in range(30)])
    per_item = make_config(
        fake_server, tmp_path, task="generic", steps=5, stop={"max_tokens_per_item": 200}
    )
    await refine_batch(data, tmp_path / "item.jsonl", per_item)
    records = read_records(tmp_path / "item.jsonl")
    assert all(r["stop_reason"] == "token_budget" and len(r["drafts"]) == 2 for r in records)
    assert len(fake_server.chat_requests()) == 6

    per_run = make_config(
        fake_server,
        tmp_path,
        task="generic",
        steps=5,
        use_cache=False,
        stop={"max_tokens_per_run": 250},
    )
    await refine_batch(data, tmp_path / "run.jsonl", per_run)
    records = read_records(tmp_path / "run.jsonl")
    assert all(r["stop_reason"] == "token_budget" and r["status"] == "ok" for r in records)
    assert len(fake_server.chat_requests()) == 6 + 3  # no step 2 once 330 tokens are spent


async def test_loglik_asks_for_logprobs_and_scores_them(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "l", "input": "Say hi."}])
    fake_server.script([Reply(content="hi there", logprobs=[-0.25, -0.75])])
    config = make_config(fake_server, tmp_path, task="generic", steps=1, rewards=["loglik"])
    await refine_batch(data, tmp_path / "out.jsonl", config)
    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["drafts"][0]["rewards"] == {"loglik": -0.5}
    assert fake_server.chat_requests()[0].body["logprobs"] is True
    # the cached answer keeps its logprobs, so a rerun scores the same
    await refine_batch(data, tmp_path / "again.jsonl", config)
    (again,) = read_records(tmp_path / "again.jsonl")
    assert again["drafts"][0]["cached"] and again["drafts"][0]["rewards"] == {"loglik": -0.5}


async def test_judge_reward_is_an_extra_request_parsed_from_the_judge_template(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "s", "text": "Rain all week."}])
    fake_server.script([Reply(content="Rain.")], match="Summarize the text above")
    fake_server.script(
        [Reply(content="Faithful but terse.\nScore: 7/10")], match="Rate the candidate"
    )
    config = make_config(
        fake_server, tmp_path, steps=1, rewards=[{"name": "judge", "scale_max": 10}]
    )
    await refine_batch(data, tmp_path / "out.jsonl", config)
    (record,) = read_records(tmp_path / "out.jsonl")
    draft = record["drafts"][0]
    assert draft["rewards"] == {"judge(scale_max=10)": 0.7}
    assert [r["role"] for r in draft["side_requests"]] == ["judge"]
    assert len(fake_server.chat_requests()) == 2


async def test_a_cut_or_filtered_judge_or_critique_answer_is_no_score_and_no_verdict(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "c", "input": "Name a prime above 50."}])
    fake_server.script([Reply(content="51")], match="Respond to the input above")
    fake_server.script([Reply(content="53")], match="Write a better answer")
    fake_server.script(  # "Score: 1" is the start of "Score: 10/10", cut at max_tokens
        [Reply(content="Score: 1", finish_reason="length"), Reply(content="Good.\nScore: 9/10")],
        match="Rate the candidate",
    )
    fake_server.script(
        [Reply(content="NO ISSUES with the first half; the secon", finish_reason="content_filter"),
         Reply(content="No issues.")],
        match="Review this draft critically",
    )  # fmt: skip
    judge = {"name": "judge", "scale_max": 10}
    config = make_config(
        fake_server, tmp_path, task="generic", steps=3, critique={"enabled": True}, rewards=[judge]
    )
    await refine_batch(data, tmp_path / "out.jsonl", config)

    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["stop_reason"] == "critic_satisfied" and record["output"] == "53"
    first, second = record["drafts"]
    assert first["rewards"] == {} and first["critique"] is None
    assert first["reward_notes"] == [
        "reward judge(scale_max=10) unavailable: "
        "the answer was cut off at max_tokens (finish_reason=length)"
    ]
    assert [(r["role"], r["text"]) for r in first["side_requests"]] == [
        ("judge", "Score: 1"),
        ("critique", "NO ISSUES with the first half; the secon"),
    ]  # kept in the record, counted, never taken as a verdict
    assert second["rewards"] == {"judge(scale_max=10)": 0.9}
    assert second["critique"] == "No issues."
    step_2 = [p for p in user_prompts(fake_server) if "Write a better answer" in p]
    assert len(step_2) == 1 and "the secon" not in step_2[0]  # no feedback from a cut critique


async def test_a_crashing_validator_fails_its_item_only(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [{"id": "ok", "input": "fine"}, {"id": "bad", "input": "boom"}]
    data = write_rows(tmp_path / "data.jsonl", rows)
    config = make_config(
        fake_server, tmp_path, task="generic", validators=[f"{__name__}:explode_on_boom"]
    )
    out = tmp_path / "out.jsonl"
    summary = await refine_batch(data, out, config)
    records = {r["id"]: r for r in read_records(out)}
    assert summary.ok == 1 and summary.failed == 1
    assert records["bad"]["stop_reason"] == "error"
    assert "validator" in records["bad"]["error"] and "cannot judge boom" in records["bad"]["error"]
    assert records["ok"]["status"] == "ok"


def explode_on_boom(draft: str, row: dict[str, Any]) -> Any:
    """A user validator with a bug on one row."""
    from postprocess.validators import ValidationResult

    if row["input"] == "boom":
        raise RuntimeError("cannot judge boom")
    return ValidationResult()


async def test_a_rejected_draft_is_a_problem_of_its_step(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "r", "input": "Who are you?"}])
    fake_server.script([Reply(content="As an AI, I cannot."), Reply(content="A helper.")])
    config = make_config(
        fake_server, tmp_path, task="generic", steps=2, postprocess=["strip", "reject_if:^As an AI"]
    )
    await refine_batch(data, tmp_path / "out.jsonl", config)
    (record,) = read_records(tmp_path / "out.jsonl")
    first, second = record["drafts"]
    assert first["text"] == "As an AI, I cannot." and "forbidden pattern" in first["problems"][0]
    assert second["kind"] == "fix" and record["output"] == "A helper."


async def test_references_reach_no_request_of_any_role(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    secret = "SECRET-REFERENCE-7731"
    rows = [{"id": "h", "text": "The museum reopens in May.", "reference": secret}]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script([Reply(content="")], match="Summarize the text above")  # forces a fix
    config = make_config(
        fake_server,
        tmp_path,
        steps=3,
        critique={"enabled": True},
        rewards=["rouge_l", "judge"],
    )
    await refine_batch(data, tmp_path / "out.jsonl", config)
    (record,) = read_records(tmp_path / "out.jsonl")
    assert [d["kind"] for d in record["drafts"]][:2] == ["draft", "fix"]
    roles = {r["role"] for d in record["drafts"] for r in d["side_requests"]}
    assert roles == {"critique", "judge"}
    assert not any(secret in json.dumps(e.body) for e in fake_server.chat_requests())


async def test_a_template_of_any_role_reading_the_reference_is_refused(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    from refine.errors import TemplateError

    folder = tmp_path / "templates" / "summarize"
    folder.mkdir(parents=True)
    (folder / "fix.j2").write_text("{{ text }} {{ reference }}")
    data = write_rows(tmp_path / "data.jsonl", [{"id": "1", "text": "t", "reference": "r"}])
    config = make_config(fake_server, tmp_path, template_dirs=[tmp_path / "templates"])
    with pytest.raises(TemplateError, match="'reference' in summarize/fix.j2"):
        await refine_batch(data, tmp_path / "out.jsonl", config)
    assert fake_server.chat_requests() == []
