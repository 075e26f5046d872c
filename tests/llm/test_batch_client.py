"""The batching client over real HTTP to the fake server's Files and Batch APIs: a stop signal
that lands inside a batch round reaches every item waiting for it (nothing waits forever)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flows.config.batch import BatchConfig
from flows.config.endpoint import EndpointConfig, RetryConfig
from flows.llm.batch_api import BatchAPI
from flows.llm.batch_client import BatchingClient
from flows.llm.batch_journal import BatchJournal
from flows.llm.batch_runner import BatchProgress, BatchRunner
from flows.llm.client import ChatClient
from tests.fake_openai import FakeOpenAI


class StopSignal(BaseException):
    """Stands for Prefect's TerminationSignal: a BaseException raised where a signal lands."""


def _client(server: FakeOpenAI, tmp_path: Path) -> BatchingClient:
    endpoint = EndpointConfig(base_url=server.base_url, model="m")
    retry = RetryConfig(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.05)
    runner = BatchRunner(
        BatchAPI(endpoint, retry, None),
        BatchJournal(tmp_path / "out.jsonl.batches.jsonl"),
        BatchConfig(poll_initial_s=0.05, poll_max_s=0.1),
        "http://fake",
    )
    return BatchingClient(
        ChatClient(endpoint, retry, None, max_in_flight=4), runner, retry, "resubmit"
    )


async def test_a_round_of_three_items_is_one_batch(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    client = _client(fake_server, tmp_path)
    client.expect(range(3))
    answers: dict[int, str] = {}

    async def ask(item: int) -> None:
        answer = await client.complete([{"role": "user", "content": f"question {item}"}])
        answers[item] = answer.content

    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(client.run_item(i, ask(i)) for i in range(3)))
    finally:
        await client.aclose()
    assert len(fake_server.batches()) == 1 and sorted(answers) == [0, 1, 2]


async def test_a_stop_signal_inside_a_round_reaches_the_waiting_items(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    client = _client(fake_server, tmp_path)
    fake_server.script_batches([{"hold_after_lines": 1}])

    async def signal_lands(progress: BatchProgress) -> None:  # runs inside the round's task
        raise StopSignal

    client.runner.on_progress = signal_lands
    client.expect(range(2))

    async def ask(item: int) -> None:
        await client.complete([{"role": "user", "content": f"question {item}"}])

    try:
        async with asyncio.timeout(30):  # before the fix: the items waited forever
            results = await asyncio.gather(
                *(client.run_item(i, ask(i)) for i in range(2)), return_exceptions=True
            )
        assert [type(r) for r in results] == [StopSignal, StopSignal]
        assert await client.cancel_open() == [fake_server.batches()[0]["id"]]
    finally:
        fake_server.release_batches()
        await client.aclose()


def test_the_batch_config_keeps_polls_in_order() -> None:
    with pytest.raises(ValueError, match="poll_max_s must be at least poll_initial_s"):
        BatchConfig(poll_initial_s=5, poll_max_s=1)
