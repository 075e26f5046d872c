"""An answer that post-processing leaves empty is never kept in the request cache nor served
from it, through the loop over real HTTP: a later run asks again instead of replaying it, so a
retry can fix the item. (Only the raw text and finish reason were checked before, so every retry
replayed the cached chatter and failed the item again.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.batch import refine_batch
from tests.batch_helpers import make_config, read_records, write_rows
from tests.cache_helpers import stored
from tests.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")


CLEANED_AWAY = "the answer is empty after post-processing"


@pytest.mark.parametrize(
    ("empty", "problem"),
    [
        ("Sure! Here is the summary:", CLEANED_AWAY),
        ("```\n```", CLEANED_AWAY),
        ("Sure! Here is the summary:\n```\n```", CLEANED_AWAY),  # a lead-in, then the fence
        ("\u200b\u200b\ufeff", "the model returned an empty answer"),  # shows nothing
        ("\x00\x1b \ufe0f", "the model returned an empty answer"),
    ],
)
async def test_an_answer_empty_after_cleaning_is_asked_again_by_the_next_run(
    fake_server: FakeOpenAI, tmp_path: Path, empty: str, problem: str
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "s", "text": "Rain all week."}])
    fake_server.script([Reply(content=empty), Reply(content="Rain all week.")])
    config = make_config(fake_server, tmp_path, steps=1)

    await refine_batch(data, tmp_path / "first.jsonl", config)
    (first,) = read_records(tmp_path / "first.jsonl")
    assert first["status"] == "failed" and first["output"] is None
    assert first["drafts"][0]["problems"] == [problem]
    assert stored(tmp_path / "cache") == {}  # nothing kept of it

    await refine_batch(data, tmp_path / "second.jsonl", config)
    (second,) = read_records(tmp_path / "second.jsonl")
    assert second["status"] == "ok" and second["output"] == "Rain all week."
    assert second["drafts"][0]["cached"] is False
    assert len(fake_server.chat_requests()) == 2  # the second run asked again

    # the good answer is kept, and a third run is served from the cache
    await refine_batch(data, tmp_path / "third.jsonl", config)
    (third,) = read_records(tmp_path / "third.jsonl")
    assert third["output"] == "Rain all week." and third["drafts"][0]["cached"] is True
    assert len(fake_server.chat_requests()) == 2
