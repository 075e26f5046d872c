"""The fake OpenAI server in its own process on a fixed port, so a test can kill it and bring
it back at the same address while ``refine run`` is talking to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServerProcess:
    """``python -m tests.fake_openai --port PORT ARGS``; ``kill`` and ``start`` again at will."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.args = args
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        command = [sys.executable, "-m", "tests.fake_openai", "--port", str(self.port), *self.args]
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a killed client's request logs a traceback there
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if line != f"FAKE_OPENAI_BASE_URL={self.base_url}":
            self.kill()
            raise RuntimeError(f"fake server did not start: {line!r}")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """End the server at once (SIGKILL: connections in flight are reset, nothing is sent)."""
        if self._proc is not None:
            os.killpg(self._proc.pid, sig)
            self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill(signal.SIGTERM)
