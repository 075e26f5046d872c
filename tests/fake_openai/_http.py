"""Small HTTP helpers shared by the fake's endpoints: request headers, bodies, JSON answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Scope

JSON = "application/json"


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers as received (lower-case names)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def parse_body(raw: bytes) -> Any:
    """The JSON body, or its text when it is not JSON (kept for the log)."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``payload`` (bytes sent as they are, anything else as JSON) with ``status``."""
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Response(data, status_code=status, headers=headers, media_type=JSON)
