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
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from typing import TYPE_CHECKING

from flows.ops.server import server_environment
from refine.errors import ConfigError

if TYPE_CHECKING:
    from prefect.settings import Settings

__all__ = ["STOP_GRACE_S", "TemporaryServer", "wants_temporary_server"]

STOP_GRACE_S = 90.0
"""How long a stopping server may take (it first records the events it holds) before its
process group is killed."""

_SERVER_DEFAULTS = {
    # the recorder writes a partial batch at each flush: one second keeps the stop short
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
_SERVER_FIXED = {
    "PREFECT__SERVER_EPHEMERAL": "1",  # the services of Prefect's ephemeral mode, no UI
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_UI_ENABLED": "0",
}


def wants_temporary_server(settings: Settings) -> bool:
    """Whether Prefect's client would start a temporary server under ``settings``."""
    return not settings.api.url and settings.server.ephemeral.enabled


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

    def start(self) -> None:
        """Spawn the server process on the bound socket; returns at once."""
        fd = self._sock.fileno()
        command = [sys.executable, "-m", "flows.ops.temp_server_process",
                   "--fd", str(fd), "--parent-pid", str(os.getpid())]  # fmt: skip
        self._proc = subprocess.Popen(
            command,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,  # Ctrl-C reaches the run, which stops the server in order
        )
        self._sock.close()  # the server holds the port now; it is freed when the server ends

    def _environment(self) -> dict[str, str]:
        base = {**os.environ, **self.settings.to_environment_variables(exclude_unset=True)}
        env = server_environment({**_SERVER_DEFAULTS, **base}, port=self.port)
        return {**env, **_SERVER_FIXED}

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the API answers ``/health``.

        Raises:
            ConfigError: it did not answer within ``timeout_s`` or exited (exit code 2).
        """
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if self._proc is None or self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop(grace_s=0)
                raise ConfigError(
                    f"the temporary Prefect server did not start within {timeout_s:g} s (a first "
                    "start creates its database, which is slow on a busy machine): run the "
                    "command again, or start a server with `refine server` and export "
                    "PREFECT_API_URL=http://127.0.0.1:4200/api, or raise "
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
                )
            time.sleep(0.1)

    def _healthy(self) -> bool:
        # http.client, not urllib: an HTTP(S)_PROXY in the environment must not be asked
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/api/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

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
