"""Process-level Prefect housekeeping for the CLI, benchmarks and tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from refine.errors import ConfigError

__all__ = ["EPHEMERAL_STARTUP_S", "drain_prefect_workers", "offline_prefect"]

EPHEMERAL_STARTUP_S = 180
"""How long a temporary Prefect server may take to start, unless the user sets
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``. Prefect's default is 20 s; a first start
on a machine creates the database and registers Prefect's blocks, which took 23 s on 2 busy
cores (later starts about 11 s), so a new user's first ``refine run`` timed out."""

_TIMED_OUT = "Timed out while attempting to connect to ephemeral Prefect API server"


@contextmanager
def offline_prefect() -> Iterator[None]:
    """Prefect settings for a run with no network and no server of the user's.

    The temporary (ephemeral) server this process may start sends no analytics (which would
    otherwise log an error per attempt on a machine that cannot reach Prefect's telemetry host)
    and may take :data:`EPHEMERAL_STARTUP_S` to start. A server the user runs is not touched.

    Raises:
        ConfigError: the temporary server did not start in time (exit code 2, with what to do),
            instead of Prefect's RuntimeError and its traceback.
    """
    from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

    with temporary_settings(
        {PREFECT_SERVER_ANALYTICS_ENABLED: False},
        set_defaults={"server.ephemeral.startup_timeout_seconds": EPHEMERAL_STARTUP_S},
    ) as settings:
        try:
            yield
        except RuntimeError as exc:
            if _TIMED_OUT not in str(exc):
                raise
            waited = settings.server.ephemeral.startup_timeout_seconds
            raise ConfigError(
                f"the temporary Prefect server did not start within {waited} s (a first start "
                "creates its database, which is slow on a busy machine): run the command again, "
                "or start a server with `refine server` and export "
                "PREFECT_API_URL=http://127.0.0.1:4200/api, or raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
            ) from None


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
