"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAI


@pytest.fixture(autouse=True, scope="session")
def _a_prefect_server_per_run() -> Iterator[None]:
    """``refine run`` started by a test, with no Prefect server configured, gets a temporary
    server of its own that ends with it (REFINE_SERVER_IDLE_TIMEOUT=0), not one kept warm for
    later runs: no test leaves a server running. tests/ops/test_warm_server.py sets its own."""
    before = os.environ.get("REFINE_SERVER_IDLE_TIMEOUT")
    os.environ["REFINE_SERVER_IDLE_TIMEOUT"] = "0"
    yield
    if before is None:
        os.environ.pop("REFINE_SERVER_IDLE_TIMEOUT", None)
    else:
        os.environ["REFINE_SERVER_IDLE_TIMEOUT"] = before


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAI]:
    """A fresh fake OpenAI server on 127.0.0.1 (free port), stopped after the test."""
    with FakeOpenAI() as server:
        yield server


from tests.prefect_fixtures import prefect_api, prefect_server  # noqa: E402,F401
