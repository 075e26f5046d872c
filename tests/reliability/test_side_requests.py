"""A judge or critique request that fails costs the item nothing but that judge's score or that
critique's verdict, through the loop over real HTTP: the draft stays usable and the output, and
the draft's ``reward_notes`` name the request and why. Only a 401/403/404 stops the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch
from refine.errors import FatalEndpointError
from tests.batch_helpers import make_config, read_records, user_prompts, write_rows
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")

STEP_1 = "Respond to the input above"
LATER_STEP = "Write a better answer"
JUDGE = "Rate the candidate"
CRITIQUE = "Review this draft critically"
JUDGE_LABEL = "judge(scale_max=10)"

REFUSAL = Reply(message_fields={"content": None, "refusal": "I won't judge."})
REASONING_ONLY = Reply(message_fields={"content": [{"type": "reasoning", "text": "Hmm, 7?"}]})


def _error_in_a_200(code: int) -> Reply:
    return Reply(body_fields={"error": {"message": "upstream broke", "code": code}},
                 omit_fields=["choices", "usage"])  # fmt: skip


# (the failing answers, as many as the retry policy asks for; what the note says of them)
FAILURES: dict[str, tuple[list[Reply], str]] = {
    "refusal": ([REFUSAL], 'the model refused: "I won\'t judge."'),
    "reasoning only": ([REASONING_ONLY], "the message content has no text part (parts: reasoning)"),
    "error 500 in a 200": ([_error_in_a_200(500)] * 3, "upstream broke"),
    "error 503 in a 200": ([_error_in_a_200(503)] * 3, "upstream broke"),
}


def _config(server: FakeOpenAI, tmp_path: Path, **changes: Any) -> Any:
    base: dict[str, Any] = {"task": "generic", "critique": {"enabled": True},
                            "rewards": [{"name": "judge", "scale_max": 10}]}  # fmt: skip
    return make_config(server, tmp_path, **{**base, **changes})


@pytest.mark.parametrize("failure", ["refusal", "reasoning only", "error 500 in a 200"])
async def test_a_failed_judge_request_leaves_its_reward_unavailable_and_keeps_the_draft(
    fake_server: FakeOpenAI, tmp_path: Path, failure: str
) -> None:
    replies, reason = FAILURES[failure]
    data = write_rows(tmp_path / "data.jsonl", [{"id": "j", "input": "Name a prime above 50."}])
    fake_server.script([Reply(content="53")], match=STEP_1)
    fake_server.script(replies, match=JUDGE)
    fake_server.script([Reply(content="No issues.")], match=CRITIQUE)
    await refine_batch(data, tmp_path / "out.jsonl", _config(fake_server, tmp_path, steps=3))

    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["status"] == "ok" and record["error"] is None, record["error"]
    assert record["output"] == "53" and record["stop_reason"] == "critic_satisfied"
    (draft,) = record["drafts"]
    assert draft["problems"] == [] and draft["rewards"] == {}
    (note,) = draft["reward_notes"]
    assert note.startswith(f"reward {JUDGE_LABEL} unavailable: the judge request failed: ")
    assert reason in note, note
    # the failed request is no answer in the record; the critique still ran and was heard
    assert [r["role"] for r in draft["side_requests"]] == ["critique"]
    assert draft["critique"] == "No issues."


@pytest.mark.parametrize("failure", ["refusal", "error 503 in a 200"])
async def test_a_failed_critique_request_is_no_verdict_and_the_item_goes_on(
    fake_server: FakeOpenAI, tmp_path: Path, failure: str
) -> None:
    replies, reason = FAILURES[failure]
    data = write_rows(tmp_path / "data.jsonl", [{"id": "c", "input": "Name a prime above 50."}])
    fake_server.script([Reply(content="51")], match=STEP_1)
    fake_server.script([Reply(content="53")], match=LATER_STEP)
    fake_server.script([Reply(content="Score: 4/10"), Reply(content="Score: 9/10")], match=JUDGE)
    fake_server.script([*replies, Reply(content="No issues.")], match=CRITIQUE)
    await refine_batch(data, tmp_path / "out.jsonl", _config(fake_server, tmp_path, steps=3))

    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["status"] == "ok" and record["error"] is None, record["error"]
    assert record["output"] == "53" and record["stop_reason"] == "critic_satisfied"
    first, second = record["drafts"]
    assert first["problems"] == [] and first["rewards"] == {JUDGE_LABEL: 0.4}
    assert first["critique"] is None  # no verdict, no feedback
    (note,) = first["reward_notes"]
    assert note.startswith("critique unavailable, so no verdict: the critique request failed: ")
    assert reason in note, note
    assert [r["role"] for r in first["side_requests"]] == ["judge"]
    assert second["rewards"] == {JUDGE_LABEL: 0.9} and second["critique"] == "No issues."
    step_2 = [p for p in user_prompts(fake_server) if LATER_STEP in p]
    assert len(step_2) == 1 and "upstream broke" not in step_2[0]


@pytest.mark.parametrize(("role", "status"), [("judge", 401), ("critique", 403)])
async def test_a_fatal_answer_to_a_side_request_still_stops_the_run(
    fake_server: FakeOpenAI, tmp_path: Path, role: str, status: int
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "f", "input": "Name a prime above 50."}])
    fake_server.script([Reply(content="53")], match=STEP_1)
    fatal = Reply(status=status)
    fake_server.script([fatal if role == "judge" else Reply(content="Score: 9/10")], match=JUDGE)
    fake_server.script([fatal if role == "critique" else Reply(content="No")], match=CRITIQUE)
    # one step without critique makes the judge's the last request: nothing after it would stop
    # the run if the 401 were taken for a failed judge request
    changes: dict[str, Any] = (
        {"steps": 1, "critique": {"enabled": False}} if role == "judge" else {"steps": 3}
    )
    out = tmp_path / "out.jsonl"
    with pytest.raises(FatalEndpointError) as caught:
        await refine_batch(data, out, _config(fake_server, tmp_path, **changes))
    assert str(status) in str(caught.value)
    assert out.read_text() == ""  # unfinished: a rerun retries the item
