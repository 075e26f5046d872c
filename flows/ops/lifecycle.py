"""Process-level Prefect housekeeping for the CLI, benchmarks and tests: the Prefect API a run
reports to (the user's server, a temporary one of its own, or one kept warm between runs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flows.ops.console import quiet_stopped_runs
from flows.ops.temp_server import TemporaryServer, wants_temporary_server
from flows.ops.warm_server import WarmServer, find_or_start

if TYPE_CHECKING:
    from prefect.settings import Settings

__all__ = ["EPHEMERAL_STARTUP_S", "PrefectApi", "drain_prefect_workers", "offline_prefect"]

EPHEMERAL_STARTUP_S = 180
"""How long a temporary Prefect server may take to start, unless the user sets
``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``. Prefect's default is 20 s; a first start
on a machine creates the database and registers Prefect's blocks, which took 23 s on 2 busy
cores (later starts about 11 s), so a new user's first ``refine run`` timed out."""


class PrefectApi:
    """The Prefect API a run reports to, as :func:`offline_prefect` arranged it: the user's
    server, or a temporary one, started at once and waited for only in :meth:`ready`."""

    def __init__(self, settings: Settings, stack: ExitStack) -> None:
        self._settings = settings
        self._stack = stack
        self._server: TemporaryServer | None = None
        self._warm: WarmServer | None = None
        self._ready = False

    def start(self, keep_warm_s: float) -> None:
        """Start (or, ``keep_warm_s`` > 0, find or start) the temporary server; returns at once."""
        if keep_warm_s > 0:
            self._warm = find_or_start(self._settings, Path(self._settings.home), keep_warm_s)
            if self._warm is not None:
                self._stack.callback(self._leave_warm, self._warm, keep_warm_s)
                return
        server = TemporaryServer(self._settings)
        self._server = server
        self._stack.callback(lambda: server.stop() if self._ready else server.stop(grace_s=0))
        server.start()  # here, in the main thread: see TemporaryServer

    def ready(self) -> None:
        """Wait for the temporary server, if any, and point this process's Prefect client at it.

        Raises:
            ConfigError: the server did not start in time (exit code 2, with what to do).
        """
        if self._ready:
            return
        timeout_s = self._settings.server.ephemeral.startup_timeout_seconds
        target = self._warm or self._server
        if target is None:
            self._ready = True
            return
        if self._warm is None or self._warm.started_here:  # seconds of silence otherwise
            from prefect.logging import get_logger

            get_logger().info(
                "Starting a temporary Prefect server (some seconds; %s)",
                "kept warm for the next runs" if self._warm else "it ends with this run",
            )
        target.wait_ready(timeout_s)
        self._ready = True
        self._stack.enter_context(_api_url(target.api_url, kept=self._warm is not None))
        # runs first at exit: while the server still listens
        self._stack.callback(drain_prefect_workers)

    def _leave_warm(self, warm: WarmServer, keep_warm_s: float) -> None:
        warm.release()
        if warm.started_here:
            print(
                f"The Prefect server started for this run keeps running at {warm.api_url} for "
                f"the next runs: it stops after {keep_warm_s:g} s unused, or now with `refine "
                "server stop` (REFINE_SERVER_IDLE_TIMEOUT=0: a server per run)",
                file=sys.stderr,
            )


@contextmanager
def offline_prefect(keep_warm_s: float = 0.0, *, wait: bool = True) -> Iterator[PrefectApi]:
    """Prefect settings for a run with no network, and its temporary server if it needs one.

    With no server configured (no ``PREFECT_API_URL``) and Prefect's ephemeral mode on, the run
    gets a temporary server on PREFECT_HOME's database, like Prefect's own temporary server:

    - ``keep_warm_s`` 0: a :class:`~flows.ops.temp_server.TemporaryServer` of its own, that
      ends with this process, whatever ends it, and stops only once it has recorded everything
      the run sent;
    - ``keep_warm_s`` > 0: the server kept warm between runs (:mod:`flows.ops.warm_server`),
      started now if none runs; it outlives the run and stops after ``keep_warm_s`` unused
      (a line on stderr says so when this run started it).

    The server is started on entry; with ``wait`` False the caller reads the dataset meanwhile
    and calls :meth:`PrefectApi.ready` before its flow starts. Either sends no analytics (which
    would otherwise log an error per attempt on a machine that cannot reach Prefect's telemetry
    host) and may take :data:`EPHEMERAL_STARTUP_S` to start. A server the user runs is not
    touched. A run stopped by Ctrl-C or a signal does not print Prefect's crash reports (see
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
        ExitStack() as stack,
    ):
        api = PrefectApi(settings, stack)
        if wants_temporary_server(settings):
            api.start(keep_warm_s)
        if wait:
            api.ready()
        yield api


@contextmanager
def _api_url(url: str, kept: bool = False) -> Iterator[None]:
    """Point this process's Prefect client at ``url``: this context, and threads that start
    without one (they read the process-wide settings, else they would start Prefect's own
    temporary server)."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging import get_logger
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    get_logger().info(
        "Using the temporary Prefect server %s at %s (`refine server` runs one that lasts, "
        "with the UI)",
        "kept warm between runs" if kept else "of this run",
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
