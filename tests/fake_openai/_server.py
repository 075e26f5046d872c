"""Running the fake: uvicorn in a daemon thread (``FakeOpenAI``) or in the main thread (CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import uvicorn

from tests.fake_openai._app import FakeApp
from tests.fake_openai._models import (
    BatchBehaviour,
    BatchBehaviours,
    LogEntry,
    Replies,
    as_behaviour,
)
from tests.fake_openai._state import FakeState


class _Uvicorn(uvicorn.Server):
    """uvicorn that reports when it accepts connections and leaves signals to its owner."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _bind(host: str, port: int) -> socket.socket:
    """A bound socket: the OS picks a free port for 0, and the port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it, and without
    # it Nagle plus delayed ACKs add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class FakeOpenAI:
    """A fake OpenAI-compatible server on real HTTP, programmable from tests and benchmarks.

    Args:
        host: interface to listen on.
        port: port to listen on; 0 lets the OS pick a free one (see ``.port`` after start).
        latency: initial per-request delay in seconds.
        token_rate: initial tokens/second pacing of completions, ``None`` for none.
        max_log: keep only the last N log entries (0 keeps none), for long benchmarks.
        keep_alive_s: how long an idle keep-alive connection stays open before the server
            closes it (uvicorn's ``timeout_keep_alive``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        token_rate: float | None = None,
        max_log: int | None = None,
        keep_alive_s: float = 30.0,
    ) -> None:
        self.host = host
        self.keep_alive_s = keep_alive_s
        self._requested_port = port
        self.state = FakeState(max_log=max_log)
        self.state.set_latency(latency, token_rate)
        self._app = FakeApp(self.state)
        self._port: int | None = None
        self._server: _Uvicorn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port served; known once started."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """What to give an OpenAI client: ``http://HOST:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> Self:
        """Serve from a daemon thread; return once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already started")
        sock = self._bind()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_thread,
            args=(sock, ready),
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"fake OpenAI server did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cutting requests in flight (hangs included); safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self._begin_shutdown)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"fake OpenAI server on port {self.port} did not stop in {timeout}s")
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self, on_started: Callable[[], None]) -> None:
        """Serve in this (main) thread until SIGTERM or SIGINT; for ``python -m``."""
        sock = self._bind()
        asyncio.run(self._serve(sock, on_started, stop_signals=(signal.SIGTERM, signal.SIGINT)))

    def _bind(self) -> socket.socket:
        sock = _bind(self.host, self._requested_port)
        self._port = int(sock.getsockname()[1])
        return sock

    def _run_thread(self, sock: socket.socket, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(sock, ready.set))
        except BaseException as error:  # reported by start(); a thread has nobody else to tell
            self._error = error
            ready.set()

    async def _serve(
        self,
        sock: socket.socket,
        on_started: Callable[[], None],
        stop_signals: Iterable[int] = (),
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._app.closing = False
        for sig in stop_signals:
            self._loop.add_signal_handler(sig, self._begin_shutdown)
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=self.keep_alive_s,  # type: ignore[arg-type]  # a float works
        )
        self._server = _Uvicorn(config, on_started)
        await self._server.serve(sockets=[sock])

    def _begin_shutdown(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._app.begin_close()

    # -- behaviour (the same methods as FakeOpenAIControl) -----------------------------------

    def script(self, replies: Replies, match: str | None = None) -> None:
        """Queue replies for requests whose canonical messages JSON contains ``match``."""
        self.state.script(replies, match)

    def set_latency(self, seconds: float, token_rate: float | None = None) -> None:
        """Delay every request by ``seconds``, plus completion tokens / ``token_rate`` if set."""
        self.state.set_latency(seconds, token_rate)

    def fail_rate(
        self,
        status: int,
        fraction: float,
        headers: Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        """Answer a seeded random ``fraction`` of unscripted requests with ``status``."""
        self.state.fail_rate(status, fraction, headers, seed)

    def reset(self) -> None:
        """Forget scripts, faults, latency and the log."""
        self.state.reset()

    @property
    def requests(self) -> list[LogEntry]:
        """A snapshot of the request log, oldest first."""
        return self.state.requests

    def chat_requests(self) -> list[LogEntry]:
        """Only the chat completion requests of the log."""
        return self.state.chat_requests()

    def clear_log(self) -> None:
        """Empty the log, keeping scripts and faults."""
        self.state.clear_log()

    # -- the Batch API (the same methods as FakeOpenAIControl) -------------------------------

    def script_batches(self, behaviours: BatchBehaviours) -> None:
        """Queue one-shot behaviours: each ``POST /v1/batches`` takes the next one."""
        self.state.batch_store.script(as_behaviour(b) for b in behaviours)

    def set_batch_behaviour(self, behaviour: BatchBehaviour | Mapping[str, Any] | None) -> None:
        """The behaviour of every batch no script answers; ``None`` for the plain one."""
        self.state.batch_store.set_default(None if behaviour is None else as_behaviour(behaviour))

    def release_batches(self) -> int:
        """Let every batch created so far go past its hold point; how many were released."""
        return self.state.batch_store.release()

    def batches(self) -> list[dict[str, Any]]:
        """Every batch object, oldest first."""
        return self.state.batch_store.batches()

    def files(self) -> list[dict[str, Any]]:
        """Every file object (uploads and batch outputs), oldest first."""
        return self.state.batch_store.files()

    def file_content(self, file_id: str) -> bytes:
        """The bytes of a stored file (``KeyError`` when there is none)."""
        stored = self.state.batch_store.file(file_id)
        if stored is None:
            raise KeyError(file_id)
        return stored.data
