"""The slot dispatcher over real sockets: backends on Unix sockets, clients over loopback TCP.

The backends are tiny ASGI apps that count the requests they hold at once, so the tests can
see that each slot only ever serves one request, and that N slots serve N at a time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from flows.local.dispatcher import SlotPool, build_dispatcher


class Backend:
    """A fake model slot: answers after ``delay_s``, remembering its peak concurrency."""

    def __init__(self, name: str, delay_s: float) -> None:
        self.name, self.delay_s = name, delay_s
        self.in_flight = self.peak = self.served = 0

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.in_flight -= 1
            self.served += 1
            if body.get("stream"):

                async def events() -> Iterator[bytes]:  # type: ignore[misc]
                    for word in ("one", "two", "three"):
                        yield f"data: {json.dumps({'word': word})}\n\n".encode()
                    yield b"data: [DONE]\n\n"

                return StreamingResponse(events(), media_type="text/event-stream")
            return JSONResponse({"backend": self.name, "echo": body["messages"][0]["content"]})

        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [{"id": "fake"}]})

        return Starlette(
            routes=[
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
            ]
        )


def _serve_in_thread(config: uvicorn.Config) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    return server, thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def behind_dispatcher(
    apps: Sequence[tuple[str, Starlette]], folder: Path, affinity: bool = False
) -> Iterator[str]:
    """Each (name, app) on a Unix socket in ``folder``, a dispatcher in front of them on
    loopback (with or without affinity); yields the dispatcher's URL, stops all on exit."""
    sockets = [folder / f"{name}.sock" for name, _ in apps]
    servers = [
        _serve_in_thread(uvicorn.Config(app, uds=str(sock), log_level="warning"))
        for (_, app), sock in zip(apps, sockets, strict=True)
    ]
    port = _free_port()
    dispatcher = build_dispatcher(SlotPool(sockets, affinity=affinity))
    servers.append(
        _serve_in_thread(
            uvicorn.Config(dispatcher, host="127.0.0.1", port=port, log_level="warning")
        )
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def slots(tmp_path: Path) -> Iterator[tuple[str, list[Backend]]]:
    """Two backends on Unix sockets behind a dispatcher on loopback; yields (url, backends)."""
    backends = [Backend("a", 0.5), Backend("b", 0.5)]
    with behind_dispatcher([(b.name, b.app()) for b in backends], tmp_path) as url:
        yield url, backends


def _chat(client: httpx.Client, text: str, **extra: object) -> httpx.Response:
    body = {"model": "fake", "messages": [{"role": "user", "content": text}], **extra}
    return client.post("/v1/chat/completions", json=body)


def test_each_slot_serves_one_request_at_a_time(slots: tuple[str, list[Backend]]) -> None:
    url, backends = slots
    with httpx.Client(base_url=url, timeout=30) as client:
        started = time.monotonic()
        with_threads: list[httpx.Response] = []

        def call(i: int) -> None:
            with_threads.append(_chat(client, f"q{i}"))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert sorted(r.json()["echo"] for r in with_threads) == [f"q{i}" for i in range(6)]
    assert [b.peak for b in backends] == [1, 1]  # never two requests on one slot
    assert sum(b.served for b in backends) == 6
    assert min(b.served for b in backends) >= 2  # both slots worked
    # 6 requests of 0.5 s on 2 slots: 3 rounds (1.5 s), not 6 (serial, 3 s), not 1 (unbounded)
    assert 1.45 < elapsed < 2.6, elapsed


def test_streaming_answers_pass_through(slots: tuple[str, list[Backend]]) -> None:
    url, _ = slots
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = _chat(client, "hi", stream=True)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    words = [
        json.loads(line[6:])["word"]
        for line in answer.text.splitlines()
        if line.startswith("data: {")
    ]
    assert words == ["one", "two", "three"]
    assert answer.text.rstrip().endswith("data: [DONE]")


def test_a_caller_that_hangs_up_gives_its_slot_back(slots: tuple[str, list[Backend]]) -> None:
    url, backends = slots
    for _ in range(4):  # more hang-ups than slots: a leaked slot would block the last call
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=url, timeout=0.05) as c:
            _chat(c, "gone")
    time.sleep(0.8)  # let the abandoned answers finish at the backends
    with httpx.Client(base_url=url, timeout=5) as client:
        answer = _chat(client, "still served")
    assert answer.json()["echo"] == "still served"
    assert [b.peak for b in backends] == [1, 1]


def test_get_requests_need_no_slot(slots: tuple[str, list[Backend]]) -> None:
    url, _ = slots
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/v1/models").json()["data"] == [{"id": "fake"}]
        health = client.get("/health").json()
        assert health == {
            "status": "ok", "slots": 2, "affinity": False, "requests": 0, "waiting": 0,
            "affinity_hits": 0,
        }  # fmt: skip


def test_a_dead_backend_gives_an_openai_shaped_502(tmp_path: Path) -> None:
    port = _free_port()
    app = build_dispatcher(SlotPool([tmp_path / "nobody-listens.sock"]))
    server, thread = _serve_in_thread(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            first, second = _chat(client, "x"), _chat(client, "y")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert first.status_code == second.status_code == 502  # the slot came back after the error
    assert "local model backend failed" in first.json()["error"]["message"]
