"""Process-level Prefect housekeeping for the CLI, benchmarks and tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["drain_prefect_workers", "offline_prefect"]


@contextmanager
def offline_prefect() -> Iterator[None]:
    """Prefect settings for a run with no network: the temporary (ephemeral) server this
    process may start sends no analytics, which would otherwise log an error per attempt on a
    machine that cannot reach Prefect's telemetry host. A server the user runs is not touched.
    """
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    with temporary_settings({PREFECT_SERVER_ANALYTICS_ENABLED: False}):
        yield


def drain_prefect_workers(timeout: float = 5.0) -> None:
    """Send the logs and events this process still has queued, while the API still listens.

    Without it, Prefect drains them at interpreter exit, after its temporary (ephemeral) server
    has already stopped, and then retries against a closed port: noisy errors and, after a
    Ctrl-C, a process that keeps running for many seconds.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout)
    EventsWorker.drain_all(timeout=timeout)
