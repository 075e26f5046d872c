"""Hidden tests over the real loop: scored in the record, never sent to the model.

A codegen batch on the fake OpenAI server (real HTTP) under a real Prefect API, with visible
``tests`` and hidden tests in each row's ``reference``; every request body the server received
is searched for the hidden tests and their marker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.batch import refine_batch
from refine.errors import ConfigError
from tests.batch_helpers import make_config, read_records, user_prompts, write_rows
from tests.fake_openai import FakeOpenAI, Reply

MARKER = "HIDDEN-7f3a9c"
VISIBLE = "assert add(1, 2) == 3\nassert add(0, 0) == 0"
HIDDEN_ASSERTS = [
    "assert add(-4, 4) == 0",
    f"assert add(10**6, 1) == 1000001, '{MARKER}'",
]
HIDDEN = f"# {MARKER}: the hidden suite\n" + "\n".join(HIDDEN_ASSERTS)
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
# passes the visible tests, fails the hidden large-number one
ALMOST = "```python\ndef add(a, b):\n    return a + b if abs(a) < 1000 else 0\n```"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"


def _assert_nothing_hidden_was_sent(server: FakeOpenAI) -> None:
    requests = server.chat_requests()
    assert requests
    for entry in requests:
        sent = json.dumps(entry.body, ensure_ascii=False)
        assert MARKER not in sent
        for statement in HIDDEN_ASSERTS:
            assert statement not in sent and json.dumps(statement)[1:-1] not in sent


@pytest.mark.usefixtures("prefect_api")
async def test_hidden_tests_score_the_drafts_and_never_reach_a_request(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [
        {
            "id": "almost",
            "prompt": "Write add(a, b): the sum.",
            "tests": VISIBLE,
            "reference": HIDDEN,
        },
        {
            "id": "fixed",
            "prompt": "Write add(a, b) returning a plus b.",
            "tests": VISIBLE,
            "reference": HIDDEN,
        },
        {"id": "open", "prompt": "Write add(a, b), adding.", "tests": VISIBLE},
    ]
    data = write_rows(tmp_path / "data.jsonl", rows)
    fake_server.script([Reply(content=ALMOST)], match="the sum.")
    fake_server.script([Reply(content=WRONG), Reply(content=RIGHT)], match="returning a plus b")
    fake_server.script([Reply(content=RIGHT)], match="adding.")
    out = tmp_path / "out.jsonl"
    # no rewards configured: codegen's defaults give test_pass_rate, then the hidden reward
    await refine_batch(data, out, make_config(fake_server, tmp_path, task="codegen", steps=3))

    records = {r["id"]: r for r in read_records(out)}
    almost = records["almost"]
    assert almost["status"] == "ok" and almost["stop_reason"] == "valid"
    assert almost["reward"] == "test_pass_rate"
    (draft,) = almost["drafts"]
    assert draft["problems"] == []  # the visible tests pass: nothing to fix
    assert draft["rewards"] == {"test_pass_rate": 1.0, "hidden_test_pass_rate": 0.5}

    fixed = records["fixed"]
    first, second = fixed["drafts"]
    assert first["problems"][0] == "1 of 2 tests pass"  # the visible validator's problems
    assert first["rewards"] == {"test_pass_rate": 0.5, "hidden_test_pass_rate": 0.0}
    assert second["kind"] == "fix" and second["problems"] == []
    assert second["rewards"] == {"test_pass_rate": 1.0, "hidden_test_pass_rate": 1.0}
    assert fixed["total_reward"] == 1.5  # the primary (visible) reward only

    (draft,) = records["open"]["drafts"]
    assert draft["rewards"] == {"test_pass_rate": 1.0}
    assert draft["reward_notes"] == [
        "reward hidden_test_pass_rate unavailable: the item has no reference"
    ]

    assert len(fake_server.chat_requests()) == 4
    assert any("assert add(1, 2) == 3" in p for p in user_prompts(fake_server))  # visible: shown
    assert any("Fix the latest solution" in p for p in user_prompts(fake_server))
    _assert_nothing_hidden_was_sent(fake_server)


@pytest.mark.usefixtures("prefect_api")
async def test_hidden_tests_as_the_first_reward_stop_the_run_before_any_request(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [{"id": "1", "prompt": "Write add.", "tests": VISIBLE, "reference": HIDDEN}]
    data = write_rows(tmp_path / "data.jsonl", rows)
    config = make_config(
        fake_server,
        tmp_path,
        task="codegen",
        select="best",
        rewards=["hidden_test_pass_rate", "test_pass_rate"],
    )
    with pytest.raises(ConfigError, match="cannot be the primary"):
        await refine_batch(data, tmp_path / "out.jsonl", config)
    assert fake_server.chat_requests() == []
