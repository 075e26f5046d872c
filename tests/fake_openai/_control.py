"""The control API: HTTP routes that program a running fake, and a client for them."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.fake_openai._models import (
    BatchBehaviour,
    BatchBehaviours,
    BatchScript,
    ConfigUpdate,
    LogEntry,
    Replies,
    Reply,
    ScriptRequest,
    as_behaviour,
)
from tests.fake_openai._state import FakeState

_OK = b'{"ok":true}'


def control_routes(state: FakeState) -> list[BaseRoute]:
    """``/_control/*`` routes over ``state``; a validation failure answers 422 with the reason."""

    def invalid(error: ValidationError) -> Response:
        return Response(error.json(), status_code=422, media_type="application/json")

    async def script(request: Request) -> Response:
        try:
            body = ScriptRequest.model_validate_json(await request.body())
        except ValidationError as error:
            return invalid(error)
        state.script(body.replies, body.match)
        return Response(_OK, media_type="application/json")

    async def config(request: Request) -> Response:
        try:
            update = ConfigUpdate.model_validate_json(await request.body())
        except ValidationError as error:
            return invalid(error)
        state.configure(update)
        return Response(_OK, media_type="application/json")

    async def log(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_log()
            return Response(_OK, media_type="application/json")
        return Response(state.log_json(), media_type="application/json")

    async def stats(request: Request) -> Response:
        return Response(state.stats_json(), media_type="application/json")

    async def reset(request: Request) -> Response:
        state.reset()
        return Response(_OK, media_type="application/json")

    async def batches(request: Request) -> Response:
        store = state.batch_store
        if request.method == "GET":
            found = {"batches": store.batches(), "files": store.files()}
            return Response(orjson.dumps(found), media_type="application/json")
        action = request.path_params["action"]
        if action == "release":
            released = orjson.dumps({"released": store.release()})
            return Response(released, media_type="application/json")
        try:
            if action == "script":
                store.script(BatchScript.model_validate_json(await request.body()).behaviours)
            elif action == "behaviour":
                store.set_default(BatchBehaviour.model_validate_json(await request.body()))
            else:
                return Response(b'{"error":"unknown action"}', status_code=404)
        except ValidationError as error:
            return invalid(error)
        return Response(_OK, media_type="application/json")

    return [
        Route("/_control/batches", batches, methods=["GET"]),
        Route("/_control/batches/{action}", batches, methods=["POST"]),
        Route("/_control/script", script, methods=["POST"]),
        Route("/_control/config", config, methods=["POST"]),
        Route("/_control/log", log, methods=["GET", "DELETE"]),
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/stats", stats, methods=["GET"]),
    ]


class FakeOpenAIControl:
    """Programs a fake server in another process with the same methods as :class:`FakeOpenAI`.

    Args:
        base_url: the server's ``.../v1`` URL as printed by ``python -m tests.fake_openai``
            (the root URL without ``/v1`` works too).
        timeout: seconds to wait for each control call.
    """

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        root = base_url.rstrip("/")
        self._root = root.removesuffix("/v1")
        self.base_url = self._root + "/v1"
        self._timeout = timeout
        # No proxies: the server is always local and a proxy from the environment would break it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else orjson.dumps(payload)
        request = urllib.request.Request(self._root + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        with self._opener.open(request, timeout=self._timeout) as response:
            return orjson.loads(response.read())

    def script(self, replies: Replies, match: str | None = None) -> None:
        """Queue replies for requests whose canonical messages JSON contains ``match``."""
        dumped = [
            r.model_dump(exclude_defaults=True) if isinstance(r, Reply) else dict(r)
            for r in replies
        ]
        self._call("POST", "/_control/script", {"replies": dumped, "match": match})

    def set_latency(self, seconds: float, token_rate: float | None = None) -> None:
        """Delay every request by ``seconds``, plus completion tokens / ``token_rate`` if set."""
        self._call("POST", "/_control/config", {"latency": seconds, "token_rate": token_rate})

    def fail_rate(
        self,
        status: int,
        fraction: float,
        headers: Mapping[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        """Answer a seeded random ``fraction`` of unscripted requests with ``status``."""
        config = {
            "fail_status": status,
            "fail_fraction": fraction,
            "fail_headers": dict(headers or {}),
            "fail_seed": seed,
        }
        self._call("POST", "/_control/config", config)

    def reset(self) -> None:
        """Forget scripts, faults, latency and the log."""
        self._call("POST", "/_control/reset")

    @property
    def requests(self) -> list[LogEntry]:
        """A snapshot of the server's log, oldest first."""
        return [LogEntry(**entry) for entry in self._call("GET", "/_control/log")["requests"]]

    def chat_requests(self) -> list[LogEntry]:
        """Only the chat completion requests of the log."""
        return [e for e in self.requests if e.path.endswith("/chat/completions")]

    def stats(self) -> dict[str, Any]:
        """``{"requests": N, "first_seen_at": unix time or None}``, kept even with no log."""
        return self._call("GET", "/_control/stats")  # type: ignore[no-any-return]

    def clear_log(self) -> None:
        """Empty the log, keeping scripts and faults."""
        self._call("DELETE", "/_control/log")

    def script_batches(self, behaviours: BatchBehaviours) -> None:
        """Queue one-shot behaviours: each ``POST /v1/batches`` takes the next one."""
        dumped = [as_behaviour(b).model_dump(exclude_defaults=True) for b in behaviours]
        self._call("POST", "/_control/batches/script", {"behaviours": dumped})

    def set_batch_behaviour(self, behaviour: BatchBehaviour | Mapping[str, Any] | None) -> None:
        """The behaviour of every batch no script answers; ``None`` for the plain one."""
        dumped = as_behaviour(behaviour or {}).model_dump(exclude_defaults=True)
        self._call("POST", "/_control/batches/behaviour", dumped)

    def release_batches(self) -> int:
        """Let every batch created so far go past its hold point; how many were released."""
        return int(self._call("POST", "/_control/batches/release")["released"])

    def batches(self) -> list[dict[str, Any]]:
        """Every batch object, oldest first."""
        return list(self._call("GET", "/_control/batches")["batches"])

    def files(self) -> list[dict[str, Any]]:
        """Every file object (uploads and batch outputs), oldest first."""
        return list(self._call("GET", "/_control/batches")["files"])
