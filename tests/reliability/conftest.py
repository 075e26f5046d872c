"""The load test runs only when asked for by marker (``-m load``), in CI's stage of its own."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave ``load`` tests out unless the ``-m`` expression names them."""
    if "load" in (config.getoption("markexpr") or ""):
        return
    dropped = [item for item in items if item.get_closest_marker("load")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("load")]
