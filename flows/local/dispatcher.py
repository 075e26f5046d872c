"""One OpenAI-compatible address in front of N single-request model processes.

llama-cpp-python's server answers one completion at a time per process (a lock around the
model), so ``--parallel N`` runs N such processes, each on its own Unix socket, and this small
ASGI app hands every POST to a free one. A request waits here, in arrival order, until a slot is
free; each backend only ever sees one request at a time, so none of them queues work behind a
lock where a client's deadline cannot see it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from flows.local.prefix_index import PrefixIndex

__all__ = ["SlotPool", "build_dispatcher", "prompt_text"]

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
    """Backends that each take one request at a time; ``acquire`` waits for a free one.

    With ``affinity`` on, a request goes to the free backend that holds the longest prefix of
    its prompt (:class:`flows.local.prefix_index.PrefixIndex`), so an item's next step lands
    where its previous step ran and its system prompt, examples and input are not computed
    again. A backend that frees up goes to the waiting request that it holds most of, looking
    at the oldest ``len(sockets) * 2`` waiters; the oldest one is passed over at most
    ``len(sockets)`` times, so no request waits behind later ones for long. Without affinity,
    or when no backend holds any of a prompt, requests are served in arrival order.
    """

    def __init__(
        self, sockets: Sequence[Path], timeout_s: float | None = None, affinity: bool = False
    ) -> None:
        if not sockets:
            raise ValueError("a slot pool needs at least one backend socket")
        self.sockets = tuple(sockets)
        self.affinity = affinity
        self.prefixes = PrefixIndex(len(self.sockets))
        self.requests = 0
        self.affinity_hits = 0
        self._timeout = httpx.Timeout(timeout_s, connect=10.0)
        self._free: list[int] = []
        self._waiters: deque[_Waiter] = deque()
        self._clients: list[httpx.AsyncClient] = []
        self._index: dict[int, int] = {}

    async def open(self) -> None:
        """Create one client per backend socket (inside the server's event loop)."""
        for slot, path in enumerate(self.sockets):
            client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(path)),
                base_url="http://backend",
                timeout=self._timeout,
            )
            self._clients.append(client)
            self._index[id(client)] = slot
            self._free.append(slot)

    async def close(self) -> None:
        """Close every backend client."""
        for client in self._clients:
            await client.aclose()
        self._clients.clear()

    @property
    def waiting(self) -> int:
        """Requests waiting for a backend now."""
        return sum(not waiter.future.done() for waiter in self._waiters)

    @property
    def any_client(self) -> httpx.AsyncClient:
        """A client for requests that need no slot (listing models)."""
        return self._clients[0]

    async def acquire(self, prompt: str | None = None) -> httpx.AsyncClient:
        """Wait until a backend is free and take it; ``prompt`` steers which one (affinity).

        Raises RuntimeError when :meth:`open` was not awaited.
        """
        if not self._clients:
            raise RuntimeError("SlotPool.open() was not awaited")
        blocks = self.prefixes.blocks(prompt) if self.affinity and prompt else []
        if self._free and not self._waiters:
            best = max(self._free, key=lambda slot: self.prefixes.held(slot, blocks))
            self._free.remove(best)
            return self._take(best, blocks)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), blocks)
        self._waiters.append(waiter)
        try:
            slot = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._hand_back(waiter.future.result())  # given a slot, then cancelled
            else:
                self._waiters.remove(waiter)
            raise
        return self._take(slot, blocks)

    def _take(self, slot: int, blocks: list[int]) -> httpx.AsyncClient:
        self.requests += 1
        if self.prefixes.held(slot, blocks):
            self.affinity_hits += 1
        self.prefixes.record(slot, blocks)
        return self._clients[slot]

    def release(self, client: httpx.AsyncClient) -> None:
        """Give a backend back to the pool (to a waiting request, if any)."""
        self._hand_back(self._index[id(client)])

    def _hand_back(self, slot: int) -> None:
        while self._waiters and self._waiters[0].future.done():
            self._waiters.popleft()  # cancelled while waiting
        if not self._waiters:
            self._free.append(slot)
            return
        head = self._waiters[0]
        chosen = head
        if self.affinity and head.passed_over < len(self.sockets):
            window = list(itertools.islice(self._waiters, len(self.sockets) * 2))
            best = max(window, key=lambda w: self.prefixes.held(slot, w.blocks))
            if self.prefixes.held(slot, best.blocks) > self.prefixes.held(slot, head.blocks):
                chosen = best
                head.passed_over += 1
        self._waiters.remove(chosen)
        chosen.future.set_result(slot)


@dataclass(eq=False)
class _Waiter:
    """A request waiting for a backend: its future and its prompt's prefix blocks."""

    future: asyncio.Future[int]
    blocks: list[int]
    passed_over: int = field(default=0)


def prompt_text(body: bytes) -> str | None:
    """The text a backend turns into prompt tokens, in order, or None when there is none.

    Chat requests: each message's role and content (parts as JSON); completions: the prompt.
    Only the order matters to the prefix index, not the exact chat template.
    """
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    messages = request.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if not isinstance(message, dict):
                return None
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content, sort_keys=True)
            parts.append(f"{message.get('role')}\x1f{text}\x1e")
        return "".join(parts)
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else None


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
        client = await pool.acquire(prompt_text(body))
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
            json.dumps(
                {
                    "status": "ok",
                    "slots": len(pool.sockets),
                    "affinity": pool.affinity,
                    "requests": pool.requests,
                    "waiting": pool.waiting,
                    "affinity_hits": pool.affinity_hits,
                }
            ),
            media_type="application/json",
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
