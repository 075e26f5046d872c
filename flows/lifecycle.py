"""Process-level Prefect housekeeping for the CLI, benchmarks and tests."""

from __future__ import annotations

__all__ = ["drain_prefect_workers"]


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
