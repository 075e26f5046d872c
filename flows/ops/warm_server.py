"""The Prefect server that ``refine run`` keeps warm between runs when no server is configured.

A Prefect API server takes seconds to start (it imports the whole server and opens its
database: 10-25 s measured on a busy 2-core machine), which a run of a few items used to pay
every time. Like sccache's server or the Gradle daemon, the first run with no
``PREFECT_API_URL`` starts one in the background and later runs reuse it:

- it is the run's temporary server (:mod:`flows.ops.temp_server`: PREFECT_HOME's database, the
  batch settings, 127.0.0.1 on a free port, no UI), started detached: its address is in
  ``PREFECT_HOME/refine-server.json``, its output in ``refine-server.log`` beside it;
- every run using it holds a shared lock on ``refine-server.users`` for its whole life (the
  kernel drops it even after a ``kill -9``); the server stops itself once no run has held that
  lock for the idle timeout (``REFINE_SERVER_IDLE_TIMEOUT``, :data:`DEFAULT_IDLE_TIMEOUT_S`);
- ``refine server stop`` stops it now; ``REFINE_SERVER_IDLE_TIMEOUT=0`` gives each run a
  server of its own that ends with it, as before;
- a run reuses it only if it was started with the same Python, Prefect and server settings;
  otherwise the run gets a server of its own and leaves that one alone.

Runs find or start the server under an exclusive lock on ``refine-server.lock``, which the
server also takes before it stops and removes its state file: a run never picks a server that
is stopping, and two runs never start two servers.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from flows.ops.temp_server import (
    STOP_GRACE_S,
    TemporaryServer,
    not_started_message,
    temporary_server_environment,
    wait_healthy,
)
from refine.errors import ConfigError

if TYPE_CHECKING:
    from prefect.settings import Settings

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "WarmServer",
    "find_or_start",
    "stop_warm_server",
    "stop_when_idle",
    "warm_server_address",
]

DEFAULT_IDLE_TIMEOUT_S = 600.0
"""How long a kept-warm server waits, unused, before it stops (sccache's default too)."""

_STATE, _LOCK, _USERS, _LOG = (
    "refine-server.json",
    "refine-server.lock",
    "refine-server.users",
    "refine-server.log",
)
_PROCESS_MODULE = "flows.ops.temp_server_process"
# per run, or how the client waits and logs: not what the server does with a run's records
_NOT_FINGERPRINTED = ("PREFECT_SERVER_API_PORT", "PREFECT_LOGGING_", "PREFECT_SERVER_EPHEMERAL_")


@dataclass
class WarmServer:
    """A kept-warm server this run uses: its address, and the lock that marks the run a user.

    Attributes:
        api_url: the API's address, for ``PREFECT_API_URL``.
        pid: the server process (and its process group).
        started_here: whether this run started it (else an earlier run did).
    """

    api_url: str
    pid: int
    started_here: bool
    _user_lock: IO[bytes]
    _starting: TemporaryServer | None = None

    @property
    def port(self) -> int:
        """The port the API listens on."""
        return int(self.api_url.rsplit(":", 1)[1].split("/", 1)[0])

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the API answers ``/health``.

        Raises:
            ConfigError: it did not answer within ``timeout_s`` or exited (exit code 2).
        """
        if not wait_healthy(self.port, timeout_s, lambda: _is_server(self.pid)):
            if self._starting is not None:
                self._starting.stop(grace_s=0)
            raise ConfigError(not_started_message(timeout_s))

    def release(self) -> None:
        """This run no longer uses the server (its idle time starts once no run does)."""
        self._user_lock.close()


def find_or_start(settings: Settings, home: Path, idle_timeout_s: float) -> WarmServer | None:
    """The kept-warm server under PREFECT_HOME ``home``, started now if none runs; ``None``
    where one runs with other settings (the caller then starts a server of its own).

    Returns at once: a server started now may not answer yet (see :meth:`WarmServer.wait_ready`).
    """
    home.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(temporary_server_environment(settings, port=0))
    with _locked(home / _LOCK):
        state = _read_state(home)
        if state is not None and _is_server(state["pid"]):
            if state.get("fingerprint") != fingerprint:
                return None
            return WarmServer(state["api_url"], state["pid"], False, _hold_shared(home))
        server = TemporaryServer(settings)
        server.start(
            detach=["--idle-timeout", f"{idle_timeout_s:g}", "--home", str(home)],
            log=home / _LOG,
        )
        pid = server.pid or 0  # set by start()
        state = {"pid": pid, "api_url": server.api_url, "fingerprint": fingerprint}
        _write_state(home, {**state, "idle_timeout_s": idle_timeout_s})
        # the lock is taken before the lock on finding is let go: the server never sees itself
        # unused before this run has started
        return WarmServer(server.api_url, pid, True, _hold_shared(home), server)


def warm_server_address(home: Path) -> str | None:
    """The API address of the kept-warm server under ``home``, if one runs."""
    state = _read_state(home)
    return state["api_url"] if state is not None and _is_server(state["pid"]) else None


def stop_warm_server(home: Path, grace_s: float = STOP_GRACE_S) -> str | None:
    """Stop the kept-warm server under ``home`` (it first records what it holds); returns its
    address, or ``None`` if none ran.

    Raises:
        ConfigError: a run still uses it (exit code 2).
    """
    with _locked(home / _LOCK):
        state = _read_state(home)
        if state is None or not _is_server(state["pid"]):
            (home / _STATE).unlink(missing_ok=True)
            return None
        if not _unused(home):
            raise ConfigError(
                f"the Prefect server at {state['api_url']} is in use by a run: stop it again once "
                "the run has ended"
            )
        (home / _STATE).unlink()
    _stop_group(state["pid"], grace_s)
    return str(state["api_url"])


def stop_when_idle(home: Path, idle_timeout_s: float, poll_s: float = 1.0) -> None:
    """In the server process: stop it (SIGTERM to itself) once no run has used it for
    ``idle_timeout_s``; first remove its state file, under the lock runs find it with."""
    idle_since: float | None = None
    while True:
        time.sleep(min(poll_s, max(idle_timeout_s / 4, 0.05)))
        if not _unused(home):
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since < idle_timeout_s:
            continue
        with _locked(home / _LOCK):
            if not _unused(home):  # a run took it meanwhile
                idle_since = None
                continue
            state = _read_state(home)
            if state is not None and state["pid"] == os.getpid():
                (home / _STATE).unlink()
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn stops as on `kill`: events recorded first
        return


def _fingerprint(environment: dict[str, str]) -> str:
    from prefect import __version__

    settings = sorted(
        (key, value)
        for key, value in environment.items()
        if key.startswith("PREFECT_") and not key.startswith(_NOT_FINGERPRINTED)
    )
    # the environment, not the path the interpreter was named by (python, python3.11, refine)
    text = json.dumps([sys.prefix, sys.version, __version__, settings])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _hold_shared(home: Path) -> IO[bytes]:
    handle = (home / _USERS).open("ab")  # not inherited by the run's children (O_CLOEXEC)
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def _unused(home: Path) -> bool:
    with (home / _USERS).open("ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((home / _STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(state, dict) and isinstance(state.get("pid"), int) and "api_url" in state
    return state if ok else None


def _write_state(home: Path, state: dict[str, Any]) -> None:
    partial = home / f"{_STATE}.{os.getpid()}.tmp"
    partial.write_text(json.dumps(state), encoding="utf-8")
    partial.replace(home / _STATE)


def _is_server(pid: int) -> bool:
    """Whether ``pid`` is a live temporary-server process (not a reused pid, not a zombie)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return _PROCESS_MODULE.encode() in command and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop_group(pid: int, grace_s: float) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _is_server(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with suppress(ChildProcessError):  # reap it where this process started it
        os.waitpid(pid, os.WNOHANG)
