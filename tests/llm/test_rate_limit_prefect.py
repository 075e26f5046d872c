"""The rpm/tpm limits as Prefect global concurrency limits with slot decay (a real server)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from prefect import get_client  # at import: Prefect sets up logging once, before caplog
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.llm.client import ChatClient
from flows.llm.rate_buckets import Bucket
from refine.errors import ConfigError
from tests.fake_openai import FakeOpenAI
from tests.llm.test_rate_limit import MakeClient
from tests.llm.test_rate_limit import make_client as make_client  # a fixture
from tests.prefect_server import PrefectServer

pytestmark = pytest.mark.usefixtures("prefect_api")

MESSAGES = [{"role": "user", "content": "Summarize: the cat sat on the mat."}]


async def _read_limit(name: str) -> tuple[int, float]:
    async with get_client() as client:
        found = await client.read_global_concurrency_limit_by_name(name)
    return found.limit, found.slot_decay_per_second


async def _create_limit(name: str, limit: int, decay: float) -> None:
    async with get_client() as client:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
        )


async def test_the_run_creates_the_limits_it_needs_named_without_the_key(
    fake_server: FakeOpenAI, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client: ChatClient = make_client(rpm=600, tpm=60_000)
    with caplog.at_level(logging.INFO, logger="flows.llm.rate_buckets"):
        await client.complete(MESSAGES)
    base = f"m@127.0.0.1:{fake_server.port}-v1"
    assert client.rate.base == base
    for suffix, per_minute in (("rpm", 600), ("tpm", 60_000)):
        bucket = Bucket.per_minute_limit(f"{suffix}:{base}", per_minute)
        limit, decay = await _read_limit(bucket.name)
        assert (limit, decay) == (bucket.capacity, pytest.approx(bucket.decay_per_s))
    created = [r.getMessage() for r in caplog.records if "created" in r.getMessage()]
    assert len(created) == 2 and not any("sk-test-secret" in line for line in created)


async def test_an_existing_limit_that_differs_is_updated_to_the_config_s_and_the_log_says_so(
    fake_server: FakeOpenAI, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"team-llm-{fake_server.port}"
    await _create_limit(f"rpm:{name}", limit=2, decay=1.0)  # 2 at once, then 1 a second
    client = make_client(rpm=6000, rate_limit_name=name)  # 600 at once, then 90 a second
    with caplog.at_level(logging.INFO, logger="flows.llm.rate_buckets"):
        for _ in range(4):
            await client.complete(MESSAGES)
    times = [e.received for e in fake_server.chat_requests()]
    assert times[-1] - times[0] < 0.9  # the config's pace, not the old limit's 1 a second
    bucket = Bucket.per_minute_limit(f"rpm:{name}", 6000)
    assert await _read_limit(bucket.name) == (600, pytest.approx(bucket.decay_per_s))
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        f"updated the Prefect rate limit 'rpm:{name}' to the config's: from 61 per minute "
        "(holds 2, drains 1/s) to 6,000 per minute (holds 600, drains 90.017/s)"
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="flows.llm.rate_buckets"):  # a later run: as is
        await make_client(rpm=6000, rate_limit_name=name).complete(MESSAGES)
    assert caplog.records == []


async def test_a_concurrency_limit_of_the_name_stops_the_run_before_any_request(
    fake_server: FakeOpenAI, make_client: MakeClient
) -> None:
    name = f"busy-{fake_server.port}"
    await _create_limit(f"tpm:{name}", limit=10, decay=0.0)
    client = make_client(tpm=1000, rate_limit_name=name)
    with pytest.raises(ConfigError, match="has no slot decay"):
        await client.complete(MESSAGES)
    assert fake_server.chat_requests() == []


@pytest.fixture
def unreachable_prefect_api(prefect_api: PrefectServer) -> Iterator[str]:
    """A Prefect API URL where nothing listens, and a client that does not retry it."""
    import socket

    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        updates = {PREFECT_API_URL: url, PREFECT_CLIENT_MAX_RETRIES: 0}
        with temporary_settings(updates=updates):
            yield url


async def test_an_unreachable_prefect_api_falls_back_to_this_process_with_a_warning(
    fake_server: FakeOpenAI,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    unreachable_prefect_api: str,
) -> None:
    client = make_client(rpm=3)  # a bucket of 1, then one every 30 s
    with caplog.at_level(logging.WARNING, logger="flows.llm.rate_buckets"):
        await client.complete(MESSAGES)
    [line] = [r.getMessage() for r in caplog.records]
    assert unreachable_prefect_api in line and "count this process only" in line
    assert len(fake_server.chat_requests()) == 1
