"""One OpenAI-compatible address in front of N single-request model processes.

llama-cpp-python's server answers one completion at a time per process (a lock around the
model), so ``--parallel N`` runs N such processes, each on its own Unix socket, and this small
ASGI app hands every POST to a free one. A request waits here, in arrival order, until a slot is
free; each backend only ever sees one request at a time, so none of them queues work behind a
lock where a client's deadline cannot see it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["SlotPool", "build_dispatcher"]

# Hop-by-hop headers (RFC 9110 §7.6.1) and those httpx recomputes: never forwarded.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
        "proxy-authorization",
        "proxy-authenticate",
    }
)


class SlotPool:
    """Backends that each take one request at a time; ``acquire`` waits for a free one."""

    def __init__(self, sockets: Sequence[Path], timeout_s: float | None = None) -> None:
        if not sockets:
            raise ValueError("a slot pool needs at least one backend socket")
        self.sockets = tuple(sockets)
        self._timeout = httpx.Timeout(timeout_s, connect=10.0)
        self._free: asyncio.Queue[httpx.AsyncClient] | None = None
        self._clients: list[httpx.AsyncClient] = []

    async def open(self) -> None:
        """Create one client per backend socket (inside the server's event loop)."""
        self._free = asyncio.Queue()
        for path in self.sockets:
            client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(path)),
                base_url="http://backend",
                timeout=self._timeout,
            )
            self._clients.append(client)
            self._free.put_nowait(client)

    async def close(self) -> None:
        """Close every backend client."""
        for client in self._clients:
            await client.aclose()
        self._clients.clear()

    @property
    def any_client(self) -> httpx.AsyncClient:
        """A client for requests that need no slot (listing models)."""
        return self._clients[0]

    async def acquire(self) -> httpx.AsyncClient:
        """Wait, in arrival order, until a backend is free and take it."""
        if self._free is None:
            raise RuntimeError("SlotPool.open() was not awaited")
        return await self._free.get()

    def release(self, client: httpx.AsyncClient) -> None:
        """Give a backend back to the pool."""
        if self._free is not None:
            self._free.put_nowait(client)


def _forward_headers(headers: httpx.Headers | object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {k: v for k, v in items if k.lower() not in _HOP_HEADERS}


def _bad_gateway(exc: Exception) -> JSONResponse:
    """An OpenAI-shaped error body, so clients show the reason rather than a parse failure."""
    message = f"local model backend failed: {type(exc).__name__}: {exc}"
    body = {"error": {"message": message, "type": "server_error", "code": 502}}
    return JSONResponse(body, status_code=502)


class _RelayResponse(StreamingResponse):
    """Streams a backend's answer and frees its slot however the exchange ends.

    The release sits around the whole ASGI call, not in the body iterator: a caller that hangs
    up before the first byte never starts the iterator, and its slot must come back all the same.
    """

    def __init__(self, upstream: httpx.Response, finish: Callable[[], Awaitable[None]]) -> None:
        super().__init__(
            upstream.aiter_raw(), upstream.status_code, _forward_headers(upstream.headers)
        )
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._finish()


def build_dispatcher(pool: SlotPool) -> Starlette:
    """The ASGI app: POSTs take a slot for their whole response; GETs go to any backend."""

    async def forward(request: Request) -> Response:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = await request.body()
        headers = _forward_headers(request.headers)
        if request.method != "POST":
            try:
                answer = await pool.any_client.request(
                    request.method, path, headers=headers, content=body
                )
            except httpx.HTTPError as exc:
                return _bad_gateway(exc)
            return Response(answer.content, answer.status_code, _forward_headers(answer.headers))
        client = await pool.acquire()
        try:
            upstream = await client.send(
                client.build_request("POST", path, headers=headers, content=body), stream=True
            )
        except httpx.HTTPError as exc:
            pool.release(client)
            return _bad_gateway(exc)

        async def finish() -> None:
            await upstream.aclose()
            pool.release(client)

        return _RelayResponse(upstream, finish)

    async def health(request: Request) -> Response:
        return Response(
            json.dumps({"status": "ok", "slots": len(pool.sockets)}), media_type="application/json"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open()
        try:
            yield
        finally:
            await pool.close()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/{path:path}", forward, methods=methods),
        ],
        lifespan=lifespan,
    )
