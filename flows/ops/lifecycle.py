"""Process-level Prefect housekeeping for the CLI, benchmarks and tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from flows.ops.console import quiet_stopped_runs
from flows.ops.temp_server import TemporaryServer, wants_temporary_server

__all__ = ["EPHEMERAL_STARTUP_S", "drain_prefect_workers", "offline_prefect"]

EPHEMERAL_STARTUP_S = 180
"""How long a temporary Prefect server may take to start, unless the user sets
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``. Prefect's default is 20 s; a first start
on a machine creates the database and registers Prefect's blocks, which took 23 s on 2 busy
cores (later starts about 11 s), so a new user's first ``refine run`` timed out."""


@contextmanager
def offline_prefect() -> Iterator[None]:
    """Prefect settings for a run with no network, and its temporary server if it needs one.

    With no server configured (no ``PREFECT_API_URL``) and Prefect's ephemeral mode on, the run
    gets a :class:`~flows.ops.temp_server.TemporaryServer` (on PREFECT_HOME's database, like
    Prefect's own temporary server) that ends with this process, whatever ends it, and stops
    only once it has recorded everything the run sent. It sends no analytics (which would
    otherwise log an error per attempt on a machine that cannot reach Prefect's telemetry host)
    and may take :data:`EPHEMERAL_STARTUP_S` to start. A server the user runs is not touched.
    A run stopped by Ctrl-C or a signal does not print Prefect's crash reports (see
    :mod:`flows.ops.console`).

    Raises:
        ConfigError: the temporary server did not start in time (exit code 2, with what to do).
    """
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    with (
        temporary_settings(
            {PREFECT_SERVER_ANALYTICS_ENABLED: False},
            set_defaults={"server.ephemeral.startup_timeout_seconds": EPHEMERAL_STARTUP_S},
        ) as settings,
        quiet_stopped_runs(),
    ):
        if not wants_temporary_server(settings):
            yield
            return
        server = TemporaryServer(settings)
        try:
            server.start()  # here, in the main thread: see TemporaryServer
            server.wait_ready(settings.server.ephemeral.startup_timeout_seconds)
            with _api_url(server.api_url):
                try:
                    yield
                finally:
                    drain_prefect_workers()  # while the server still listens
        finally:
            server.stop()


@contextmanager
def _api_url(url: str) -> Iterator[None]:
    """Point this process's Prefect client at ``url``: this context, and threads that start
    without one (they read the process-wide settings, else they would start Prefect's own
    temporary server)."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging import get_logger
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    get_logger().info(
        "Started a temporary Prefect server for this run at %s (`refine server` runs one that "
        "lasts, with the UI)",
        url,
    )
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()
    try:
        # no UI URL: the server serves no UI, and is gone once the run ends ("View at" links)
        with temporary_settings({PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


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
