"""The ASGI app: OpenAI's ``/v1`` endpoints answered from a :class:`FakeState`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from time import monotonic
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fake_openai import _policy as policy
from tests.fake_openai._batch_routes import batch_routes
from tests.fake_openai._chat import ChatTurn, failure_of, invalid_body
from tests.fake_openai._control import control_routes
from tests.fake_openai._http import JSON, headers_of, parse_body
from tests.fake_openai._models import LogEntry, Reply
from tests.fake_openai._state import FakeState

_SEND_KEY = "fake_openai.send"
_MODELS = orjson.dumps(
    {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake-openai"}],
    }
)


async def _abort(scope: Scope) -> None:
    """Close the client's socket without a response (uvicorn's protocol exposes its transport)."""
    cycle = getattr(scope.get(_SEND_KEY), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("drop_connection needs uvicorn's h11/httptools protocol")
    transport.abort()
    # Let connection_lost run so uvicorn marks the cycle disconnected and sends nothing more.
    await asyncio.sleep(0)


async def _client_left_during(receive: Receive, seconds: float) -> bool:
    """Wait ``seconds``; True when the client hung up meanwhile (a killed client's request must
    not count as answered, or a resumed run would look like it asked twice)."""
    try:
        async with asyncio.timeout(seconds):
            await _until_disconnect(receive)
    except TimeoutError:
        return False
    return True


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class FakeApp:
    """ASGI entry point; tracks in-flight requests so a stopping server can cut them at once."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.closing = False
        self._inflight: set[asyncio.Task[Any]] = set()
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            *batch_routes(state),
            Route("/v1/{rest:path}", self._not_found, methods=["GET", "POST", "DELETE", "PUT"]),
            *control_routes(state),
        ]
        self._starlette = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_SEND_KEY] = send
        if self.closing:
            await _abort(scope)
            return
        task = asyncio.current_task()
        if task is None:  # not a task (cannot be cancelled anyway): nothing to track
            await self._starlette(scope, receive, send)
            return
        self._inflight.add(task)
        try:
            await self._starlette(scope, receive, send)
        except asyncio.CancelledError:
            if not self.closing:
                raise
            await _abort(scope)
        finally:
            self._inflight.discard(task)

    def begin_close(self) -> None:
        """Cut every request in flight (hangs, delays, streams); call on the server's loop."""
        self.closing = True
        for task in list(self._inflight):
            task.cancel()

    # -- /v1 endpoints -----------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        scope = request.scope
        now = monotonic()
        entry = LogEntry(now, scope["method"], scope["path"], headers_of(scope), None)
        entry.answered, entry.status = now, 200
        self.state.record(entry)
        return Response(_MODELS, media_type=JSON)

    async def _not_found(self, request: Request) -> Response:
        scope = request.scope
        raw = await request.body()
        entry = LogEntry(
            monotonic(), scope["method"], scope["path"], headers_of(scope), parse_body(raw)
        )
        self.state.record(entry)
        message = (
            f"Unknown path {scope['path']} "
            "(the fake serves chat/completions, models, files and batches)"
        )
        return self._body(entry, 404, orjson.dumps(policy.error_payload(404, message)))

    async def _chat(self, request: Request) -> Response:
        scope = request.scope
        received = monotonic()
        body = parse_body(await request.body())
        entry = LogEntry(received, scope["method"], scope["path"], headers_of(scope), body)
        invalid = invalid_body(body)
        if invalid is not None:
            self.state.record(entry)
            return self._body(entry, 400, invalid)
        turn = ChatTurn.take(self.state, body)
        reply, entry.scripted = turn.reply, turn.scripted
        entry.stream = bool(body.get("stream"))
        self.state.record(entry)

        delay = self.state.latency + reply.delay
        if delay > 0 and await _client_left_during(request.receive, delay):
            return Response()  # never answered: the log keeps status None, answered None
        special = await self._special(request, entry, reply)
        if special is not None:
            return special
        answer = turn.answer(self.state)
        rate = self.state.token_rate
        pace = answer.completion_tokens / rate if rate else 0.0
        if entry.stream:
            usage: dict[str, Any] | None = answer.usage
            options = body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage")):
                usage = None
            events = self._events(entry, answer.model, answer.content, reply, usage, pace)
            return StreamingResponse(events, media_type="text/event-stream")
        if pace:
            await asyncio.sleep(pace)
        data = turn.completion_body(answer)
        return self._body(entry, 200, data, content=answer.content, dribble=reply.dribble_seconds)

    async def _special(self, request: Request, entry: LogEntry, reply: Reply) -> Response | None:
        """Answer the fault-like parts of a reply, or ``None`` to go on with a normal answer."""
        if reply.hang:
            await _until_disconnect(request.receive)
            return Response()  # the client is gone; uvicorn discards this
        if reply.drop_connection:
            self.state.finish(entry, monotonic(), None)
            await _abort(request.scope)
            return Response()
        failure = failure_of(reply)
        if failure is not None:
            status, data = failure
            return self._body(entry, status, data, reply.headers, dribble=reply.dribble_seconds)
        return None

    def _body(
        self,
        entry: LogEntry,
        status: int,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        content: str | None = None,
        dribble: float = 0.0,
    ) -> Response:
        if not dribble:
            self.state.finish(entry, monotonic(), status, content)
            return Response(data, status_code=status, headers=headers, media_type=JSON)
        done = lambda: self.state.finish(entry, monotonic(), status, content)  # noqa: E731
        sized = {**(headers or {}), "content-length": str(len(data))}
        return StreamingResponse(_trickle(data, dribble, done), status, sized, media_type=JSON)

    async def _events(
        self,
        entry: LogEntry,
        model: str,
        content: str,
        reply: Reply,
        usage: dict[str, Any] | None,
        pace: float,
    ) -> AsyncIterator[bytes]:
        """SSE chunks as OpenAI streams them; pace and dribble seconds spread over the deltas."""
        stream_error = reply.stream_error
        base: dict[str, Any] = {
            "id": policy.new_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        if usage is not None:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return policy.sse({**base, "choices": [choice]})

        pieces = policy.stream_pieces(content)
        cut = len(pieces) // 2 if stream_error is not None else -1
        pause = (pace + reply.dribble_seconds) / len(pieces) if pieces else 0.0
        sent: list[str] = []
        try:
            yield chunk({"role": "assistant", "content": ""})
            for index, piece in enumerate(pieces):
                if index == cut:
                    yield policy.sse(policy.error_payload(500, stream_error))
                    return
                if pause:
                    await asyncio.sleep(pause)
                yield chunk({"content": piece})
                sent.append(piece)
            if cut >= 0:  # nothing to split: the error comes right after the role chunk
                yield policy.sse(policy.error_payload(500, stream_error))
                return
            yield chunk({}, reply.finish_reason)
            if usage is not None:
                yield policy.sse({**base, "choices": [], "usage": usage})
            yield policy.SSE_DONE
        finally:
            self.state.finish(entry, monotonic(), 200, "".join(sent))


async def _trickle(data: bytes, seconds: float, done: Callable[[], None]) -> AsyncIterator[bytes]:
    """Yield ``data`` in up to ten pieces spread over ``seconds``."""
    step = max(1, -(-len(data) // 10))
    parts = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    try:
        for part in parts:
            await asyncio.sleep(seconds / len(parts))
            yield part
    finally:
        done()
