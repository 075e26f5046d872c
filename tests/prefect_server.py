"""A real Prefect server for the test session: ``prefect server start`` on 127.0.0.1 (SQLite).

One server serves the whole session (starting one costs seconds); in-process flows reach it
through Prefect's settings, and ``refine`` subprocesses through ``PREFECT_API_URL``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flows.ops.server import BATCH_SERVER_SETTINGS, server_environment

__all__ = ["PrefectServer"]

# The settings `refine server` uses to keep up with batch loads (measured: see DESIGN.md).
SERVER_ENV = {
    **BATCH_SERVER_SETTINGS,
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrefectServer:
    """``prefect server start`` in a subprocess with its own PREFECT_HOME."""

    def __init__(self, home: Path, settings: dict[str, str] | None = None) -> None:
        self.home = home
        self.settings = {**SERVER_ENV, **(settings or {})}  # e.g. the UI on, a PostgreSQL URL
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log_path = home / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def client_env(self) -> dict[str, str]:
        """Environment for a process that should report to this server."""
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }

    def start(self, timeout: float = 90.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = server_environment(
            {**os.environ, **self.settings, "PREFECT_HOME": str(self.home)}, port=self.port
        )
        prefect = Path(sys.executable).with_name("prefect")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"prefect server did not answer within {timeout} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)  # the whole group: no orphan server left
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None
