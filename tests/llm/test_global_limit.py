"""A Prefect global concurrency limit caps requests to one endpoint, across every client."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.batch import refine_batch
from tests.batch_helpers import make_config
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.usefixtures("prefect_api")


def _most_at_once(server: FakeOpenAI) -> int:
    """The largest number of requests the server held at the same moment."""
    events = []
    for entry in server.chat_requests():
        events += [(entry.received, 1), (entry.answered or entry.received, -1)]
    held = peak = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
        held += change
        peak = max(peak, held)
    return peak


async def _create_limit(name: str, limit: int) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=limit)
        )


async def test_requests_never_exceed_the_global_limit(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    await _create_limit("fake-endpoint", 2)
    fake_server.set_latency(0.2)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"id": "{i}", "text": "text {i}"}}\n' for i in range(6)))
    config = make_config(
        fake_server, tmp_path, steps=1, concurrency=6, endpoint={"global_limit": "fake-endpoint"}
    )
    summary = await refine_batch(data, tmp_path / "out.jsonl", config)
    assert summary.ok == 6
    assert _most_at_once(fake_server) == 2  # 6 allowed locally, 2 by the global limit


async def test_a_missing_limit_stops_the_run_before_any_request(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    from refine.errors import ConfigError

    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "1", "text": "text"}\n')
    config = make_config(fake_server, tmp_path, steps=1, endpoint={"global_limit": "nowhere"})
    with pytest.raises(ConfigError, match="prefect gcl create nowhere --limit N"):
        await refine_batch(data, tmp_path / "out.jsonl", config)
    assert fake_server.chat_requests() == []
