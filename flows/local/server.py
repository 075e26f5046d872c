"""Serve a GGUF model on 127.0.0.1: N slot processes behind one OpenAI-compatible address.

This is what ``refine serve-model`` runs in the foreground, and what ``refine run`` starts in
the background when no endpoint is configured. The slots are :mod:`flows.local.backend`
processes on Unix sockets in a private folder; :mod:`flows.local.dispatcher` hands each request
to a free one. Whatever ends the server (Ctrl-C, SIGTERM, an error, its parent dying), the slot
processes end with it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from flows.config.local import LocalModelConfig
from flows.local.model import model_alias
from refine.errors import ConfigError

__all__ = ["LocalModelError", "ModelSlots", "log_tail", "serve"]

_STOP_GRACE_S = 5.0


class LocalModelError(ConfigError):
    """The local model could not be started; the message carries the server's last words."""


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a server log, for error messages that say why it did not start."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


class ModelSlots:
    """The slot processes: started together, checked together, stopped together."""

    def __init__(self, config: LocalModelConfig, model_path: Path) -> None:
        self.config = config
        self.model_path = model_path
        self.folder = Path(tempfile.mkdtemp(prefix="refine-slots-"))
        self.sockets = [self.folder / f"slot-{i}.sock" for i in range(config.parallel)]
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Spawn one backend per slot; each logs to a file next to its socket."""
        for index, sock in enumerate(self.sockets):
            command = [
                sys.executable, "-m", "flows.local.backend",
                "--uds", str(sock),
                "--model", str(self.model_path),
                "--alias", model_alias(self.model_path),
                "--ctx-size", str(self.config.ctx_size),
                "--threads", str(self.config.threads_per_slot()),
                "--parent-pid", str(os.getpid()),
                *(["--chat-format", self.config.chat_format] if self.config.chat_format else []),
                *(["--repack"] if self.config.weight_repack else []),
                "--prompt-cache-mib", str(self.config.prompt_cache_mib),
            ]  # fmt: skip
            with (self.folder / f"slot-{index}.log").open("wb") as log:
                self._processes.append(
                    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                )

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every slot answers ``GET /v1/models``; fail with the slot's log if not."""
        import httpx

        deadline = time.monotonic() + timeout_s
        for index, (sock, process) in enumerate(zip(self.sockets, self._processes, strict=True)):
            transport = httpx.HTTPTransport(uds=str(sock))
            with httpx.Client(transport=transport, base_url="http://slot", timeout=2.0) as client:
                while True:
                    if process.poll() is not None:
                        raise LocalModelError(
                            f"the local model server (slot {index}) exited with status "
                            f"{process.returncode} while loading {self.model_path}:\n"
                            + log_tail(self.folder / f"slot-{index}.log")
                        )
                    try:
                        if client.get("/v1/models").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise LocalModelError(
                            f"the local model did not answer within {timeout_s:g} s "
                            f"(slot {index}; raise [local_model] startup_timeout_s):\n"
                            + log_tail(self.folder / f"slot-{index}.log")
                        )
                    time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM every slot, SIGKILL those still alive after a grace period, remove the folder."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in self._processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _bind_loopback(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise LocalModelError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    return sock


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``finally``, so the slots are stopped


def serve(
    config: LocalModelConfig, model_path: Path, port: int, on_ready: Callable[[str], None]
) -> None:
    """Start the slots, listen on 127.0.0.1:port (0 = any free port), serve until stopped.

    ``on_ready`` receives the base URL (``http://127.0.0.1:PORT/v1``) once requests will be
    answered.
    """
    import uvicorn

    from flows.local.dispatcher import SlotPool, build_dispatcher

    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    sock = _bind_loopback(port)
    slots = ModelSlots(config, model_path)
    try:
        slots.start()
        slots.wait_ready(config.startup_timeout_s)
        app = build_dispatcher(SlotPool(slots.sockets, affinity=config.slot_affinity))
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        )

        async def main() -> None:
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.05)
            if server.started:
                on_ready(f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
            await serving

        asyncio.run(main())
    finally:
        sock.close()
        slots.stop()
        signal.signal(signal.SIGTERM, previous)
