"""Session fixtures for a real Prefect server (imported by conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.ops.lifecycle import drain_prefect_workers
from tests.prefect_server import PrefectServer


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One ``prefect server start`` on 127.0.0.1 for the whole test session."""
    server = PrefectServer(Path(tmp_path_factory.mktemp("prefect-home")))
    server.start()
    try:
        yield server
    finally:
        drain_prefect_workers()
        server.stop()


@pytest.fixture
def prefect_api(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """Point in-process flows at the session's Prefect server for one test."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server
