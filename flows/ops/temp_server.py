"""The temporary Prefect server a run starts when no server is configured.

Prefect's own (``SubprocessASGIServer``, started by its client when ``PREFECT_API_URL`` is
unset) outlives a ``kill -9`` of the run, holding its port and ~225 MB, and is stopped at
interpreter exit with five seconds' grace, cancelling the task runs its services were still
recording. This one serves the same app on the same database (PREFECT_HOME's, so a later
``refine server`` or ``prefect server start`` shows the runs), but:

- its process ends with the run's, whatever signal ends the run (``PR_SET_PDEATHSIG``; see
  :mod:`flows.ops.temp_server_process`), and its process group is stopped at the run's end;
- it listens on a socket the run binds first (a free port, no race for it);
- it records every event it was sent before it stops;
- it uses the batch settings of ``refine server`` so its recorder keeps up (DESIGN.md).

Started *detached* (see :mod:`flows.ops.warm_server`), the same server outlives the run that
started it, writes to a log file instead of the run's output, and stops itself once idle.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from flows.ops.server import server_environment
from refine.errors import ConfigError

if TYPE_CHECKING:
    from prefect.settings import Settings

__all__ = [
    "STOP_GRACE_S",
    "TemporaryServer",
    "not_started_message",
    "temporary_server_environment",
    "wait_healthy",
    "wants_temporary_server",
]

STOP_GRACE_S = 90.0
"""How long a stopping server may take (it first records the events it holds) before its
process group is killed."""

_SERVER_DEFAULTS = {
    # the recorder writes a partial batch at each flush: one second keeps the stop short
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
_NOT_PASSED_ON = ("OPENAI_", "REFINE_")
_SERVER_FIXED = {
    "PREFECT__SERVER_EPHEMERAL": "1",  # the services of Prefect's ephemeral mode, no UI
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_UI_ENABLED": "0",
}


def temporary_server_environment(settings: Settings, port: int) -> dict[str, str]:
    """The environment of a temporary server on ``port`` for a run under ``settings``: the
    run's, less its API keys and refine settings (a server may outlive the run)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_PASSED_ON)}
    base = {**own, **settings.to_environment_variables(exclude_unset=True)}
    env = server_environment({**_SERVER_DEFAULTS, **base}, port=port)
    return {**env, **_SERVER_FIXED}


def wants_temporary_server(settings: Settings) -> bool:
    """Whether Prefect's client would start a temporary server under ``settings``."""
    return not settings.api.url and settings.server.ephemeral.enabled


def not_started_message(timeout_s: float) -> str:
    """What to do when a temporary server did not start within ``timeout_s``."""
    return (
        f"the temporary Prefect server did not start within {timeout_s:g} s (a first "
        "start creates its database, which is slow on a busy machine): run the "
        "command again, or start a server with `refine server` and export "
        "PREFECT_API_URL=http://127.0.0.1:4200/api, or raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    )


def wait_healthy(port: int, timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Whether the API on 127.0.0.1:``port`` answered ``/health`` within ``timeout_s``, while
    ``alive()`` (its process still runs) held."""
    deadline = time.monotonic() + timeout_s
    while not _healthy(port):
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _healthy(port: int) -> bool:
    # http.client, not urllib: an HTTP(S)_PROXY in the environment must not be asked
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/api/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class TemporaryServer:
    """A Prefect API server on 127.0.0.1 for the life of one run.

    Start it from the main thread: Linux signals a child when the thread that started it ends.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # as uvicorn's own sockets: else the connections it closed keep the port for a minute
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)  # requests wait in the backlog until the server serves them
        self.port: int = self._sock.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server process's id (also its process group's), once started."""
        return self._proc.pid if self._proc else None

    def start(self, *, detach: list[str] | None = None, log: Path | None = None) -> None:
        """Spawn the server process on the bound socket; returns at once.

        Args:
            detach: ``None``: the server ends with this process. Else the server process's
                extra arguments that let it outlive this process (see
                :mod:`flows.ops.warm_server`); its output then goes to ``log``.
            log: where a detached server writes its output (appended).
        """
        fd = self._sock.fileno()
        command = [sys.executable, "-m", "flows.ops.temp_server_process", "--fd", str(fd)]
        if detach is None:
            command += ["--parent-pid", str(os.getpid())]
        else:
            command += detach
        with open(log or os.devnull, "ab") as output:
            self._proc = subprocess.Popen(
                command,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                # a detached server must not hold the run's stdout/stderr pipes open
                stdout=None if detach is None else output,
                stderr=None if detach is None else output,
                pass_fds=(fd,),
                start_new_session=True,  # Ctrl-C reaches the run, which stops the server in order
            )
        self._sock.close()  # the server holds the port now; it is freed when the server ends

    def environment(self) -> dict[str, str]:
        """The server process's environment: the run's Prefect settings, the batch settings."""
        return temporary_server_environment(self.settings, self.port)

    def poll(self) -> int | None:
        """The server process's exit code, or ``None`` while it runs (or was never started)."""
        return self._proc.poll() if self._proc else None

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the API answers ``/health``.

        Raises:
            ConfigError: it did not answer within ``timeout_s`` or exited (exit code 2).
        """
        alive = self._proc is not None and self._proc.poll() is None
        if not alive or not wait_healthy(self.port, timeout_s, lambda: self.poll() is None):
            self.stop(grace_s=0)
            raise ConfigError(not_started_message(timeout_s))

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask the server to stop (it records what it holds first); kill its group after
        ``grace_s``, or at once if the wait is interrupted."""
        self._sock.close()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: anything the server started
            proc.wait()
