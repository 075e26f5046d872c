"""What real endpoints do, through ``refine run`` over real HTTP: rate limits, server faults,
bad answers, refusals and a wrong address; every item still ends as one explained record."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, Reply
from tests.prefect_server import PrefectServer
from tests.reliability.invariants import (
    SECRET,
    Budget,
    no_secret_anywhere,
    processes_mentioning,
    records_by_id,
    refine,
    refine_env,
    requests_per_item,
    served_only_real_answers,
    within_budget,
    within_deadline,
    write_config,
    write_items,
)

DEADLINE = 1.0
SSE_WITH_ERROR = (
    'data: {"choices": [{"index": 0, "delta": {"content": "Half an"}}]}\n\n'
    'data: {"error": {"message": "overloaded mid-stream", "type": "server_error"}}\n\n'
)


def _args(data: Path, out: Path, config: Path, base_url: str, *more: str) -> list[str]:
    return ["run", str(data), "-o", str(out), "--config", str(config), "--base-url", base_url,
            "--model", "m", "--concurrency", "4", *more]  # fmt: skip


def test_faults_and_bad_answers_each_end_as_one_explained_record(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    retry_at = int(time.time()) + 7  # an HTTP-date a few seconds after the run starts
    scripts: dict[int, list[Reply]] = {
        1: [Reply(status=500), Reply(status=502), Reply(status=503)],  # a burst, then fine
        2: [Reply(drop_connection=True)] * 2,  # connection resets
        3: [Reply(hang=True)],  # never answers: cut at the deadline
        4: [Reply(dribble_seconds=5)],  # bytes slower than the deadline
        5: [Reply(status=429, headers={"Retry-After": "1"})],
        6: [
            Reply(
                status=429, headers={"Retry-After": email.utils.formatdate(retry_at, usegmt=True)}
            )
        ],
        7: [Reply(status=429, headers={"Retry-After": "30"})],  # past the budget: fail now
        8: [Reply(content="")],  # empty: a problem of the draft, fixed by step 2
        9: [Reply(content="Half a sen", finish_reason="length")],
        10: [Reply(raw_body="{not json")],
        11: [Reply(raw_body='{"id": "c1", "object": "chat.completion"}')],  # no choices
        12: [Reply(raw_body=SSE_WITH_ERROR)],  # a stream (with an error event) to a plain call
        13: [Reply(status=400, content="This model's maximum context length is 4096 tokens")],
        14: [Reply(status=503)] * 4,  # a burst longer than the budget
    }
    for index, replies in scripts.items():
        fake_server.script(replies, match=f"item-{index:04d}")
    ids = [f"item-{i:04d}" for i in range(16)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(
        tmp_path / "c.toml", max_attempts=4, call_deadline_s=DEADLINE, retry_after_max_s=10,
        max_elapsed_s=20,
    )  # fmt: skip
    started = time.monotonic()
    result = refine(
        _args(data, out, config, fake_server.base_url), refine_env(prefect_server, tmp_path)
    )
    wall = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]

    records = records_by_id(out, ids)
    log = fake_server.chat_requests()
    budget = Budget(steps=2, max_attempts=4)
    within_budget(records, log, budget)
    within_deadline(records.values(), log, DEADLINE)
    served_only_real_answers(records.values(), log)
    sent = requests_per_item(log)
    failed = {i: r["error"] for i, r in records.items() if r["status"] == "failed"}
    assert set(failed) == {"item-0007", "item-0010", "item-0011", "item-0012", "item-0013",
                           "item-0014"}  # fmt: skip
    # transport faults and rate limits within the budget: retried, then the item went on
    assert [records[f"item-{i:04d}"]["drafts"][0]["attempts"] for i in range(1, 7)] == [
        4, 3, 2, 2, 2, 2,
    ]  # fmt: skip
    assert all(sent[f"item-{i:04d}"] == records[f"item-{i:04d}"]["drafts"][0]["attempts"] + 1
               for i in range(1, 7))  # fmt: skip
    by_item = {i: [e for e in log if i in str(e.messages)] for i in ("item-0003", "item-0004",
               "item-0005", "item-0006")}  # fmt: skip
    assert by_item["item-0003"][0].answered is None  # the hang was cut by the client
    assert by_item["item-0004"][1].received - by_item["item-0004"][0].received < DEADLINE + 0.6
    assert by_item["item-0005"][1].received - by_item["item-0005"][0].received >= 0.95
    wall_offset = time.time() - time.monotonic()
    assert by_item["item-0006"][1].received + wall_offset >= retry_at - 0.05
    # bad answers: recorded as problems the next step fixes, or the item fails, clearly
    for index, problem in [(8, "empty"), (9, "max_tokens")]:
        record = records[f"item-{index:04d}"]
        assert record["status"] == "ok" and record["selected_step"] == 2
        assert any(problem in p for p in record["drafts"][0]["problems"]), record["drafts"][0]
    assert "retry after 30 s, more than the retry budget allows" in failed["item-0007"]
    assert "not valid JSON" in failed["item-0010"] and "'{not json'" in failed["item-0010"]
    assert "has no choices" in failed["item-0011"]
    assert "it begins 'data: " in failed["item-0012"]
    assert "answered 400 after 1 attempt(s)" in failed["item-0013"]
    assert "maximum context length is 4096 tokens" in failed["item-0013"]
    assert sent["item-0013"] == 1 and sent["item-0007"] == 1 and sent["item-0014"] == 4
    assert "answered 503 after 4 attempt(s)" in failed["item-0014"]
    # every call ends within about max_elapsed + backoff_max + deadline: far less here
    assert wall < 60
    assert processes_mentioning(str(tmp_path)) == []
    assert {e.headers["authorization"] for e in log} == {f"Bearer {SECRET}"}
    no_secret_anywhere(prefect_server, out, tmp_path / "cache", texts=[result.stdout])


@pytest.mark.parametrize(
    ("status", "words"),
    [(403, "not allowed"), (404, "check --base-url and that model 'm' is served there")],
)
def test_a_refusing_endpoint_stops_the_run_once(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path, status: int, words: str
) -> None:
    fake_server.fail_rate(status, 1.0)
    data = write_items(tmp_path / "data.jsonl", 30)
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml")
    result = refine(
        _args(data, out, config, fake_server.base_url), refine_env(prefect_server, tmp_path)
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"answered {status}" in errors[0] and words in result.stderr
    assert len(fake_server.chat_requests()) <= 4  # only those already in flight
    assert out.read_text() == ""  # unfinished items are left for a rerun, never half-written
    no_secret_anywhere(prefect_server, out, texts=[result.stdout])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.parametrize(
    ("base_url", "words"),
    [
        (f"http://127.0.0.1:{_closed_port()}/v1", "Connection refused"),
        ("http://no-such-host.invalid/v1", "does not resolve"),
    ],
)
def test_a_wrong_base_url_fails_at_once_with_the_url(
    prefect_server: PrefectServer, tmp_path: Path, base_url: str, words: str
) -> None:
    data = write_items(tmp_path / "data.jsonl", 50)
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    result = refine(
        _args(data, out, write_config(tmp_path / "c.toml"), base_url),
        refine_env(prefect_server, tmp_path),
    )
    assert result.returncode == 2 and time.monotonic() - started < 15
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot reach {base_url}" in errors[0] and words in errors[0]
    assert "refine run" not in result.stdout  # no batch ran: no summary table
    assert not out.exists()


def test_a_429_storm_on_half_the_requests_stays_within_budget(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    fake_server.fail_rate(429, 0.5, headers={"Retry-After": "0"}, seed=7)
    ids = [f"item-{i:04d}" for i in range(40)]
    data = write_items(tmp_path / "data.jsonl", len(ids))
    out = tmp_path / "out.jsonl"
    config = write_config(tmp_path / "c.toml", max_attempts=8, backoff_max_s=0.05)
    result = refine(
        _args(data, out, config, fake_server.base_url), refine_env(prefect_server, tmp_path)
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    records = records_by_id(out, ids)
    log = fake_server.chat_requests()
    within_budget(records, log, Budget(steps=2, max_attempts=8))
    served_only_real_answers(records.values(), log)
    assert sum(e.status == 429 for e in log) > len(log) / 3  # the storm did happen
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert len(ok) >= 36  # a call fails only after 8 refusals in a row: (1/2)^8 per call
    for record in records.values():
        if record["status"] == "failed":
            assert "answered 429 after 8 attempt(s)" in record["error"]


async def test_an_idle_connection_closed_by_the_server_costs_no_retry(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from flows.config.run import EndpointConfig, RetryConfig
    from flows.llm.client import ChatClient

    messages = [{"role": "user", "content": "Summarize: item-0000 is fine."}]
    with FakeOpenAI(keep_alive_s=0.2) as server:
        client = ChatClient(
            EndpointConfig(base_url=server.base_url, model="m"),
            RetryConfig(max_attempts=3, backoff_initial_s=0.01),
            SecretStr(SECRET),
            max_in_flight=1,
        )
        try:
            first = await client.complete(messages)
            await asyncio.sleep(0.6)  # the server closes the idle pooled connection meanwhile
            second = await client.complete(messages)
        finally:
            await client.aclose()
        assert first.attempts == second.attempts == 1
        assert [e.status for e in server.chat_requests()] == [200, 200]
