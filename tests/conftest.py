"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAI


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAI]:
    """A fresh fake OpenAI server on 127.0.0.1 (free port), stopped after the test."""
    with FakeOpenAI() as server:
        yield server


from tests.prefect_fixtures import prefect_api, prefect_server  # noqa: E402,F401
