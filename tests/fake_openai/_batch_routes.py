"""``/v1/files`` and ``/v1/batches``: OpenAI's Files and Batch APIs over a :class:`BatchStore`.

Every request is logged like the other ``/v1`` requests (an upload's log body is a summary,
``{"purpose", "filename", "bytes"}``, not the file).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.fake_openai import _policy as policy
from tests.fake_openai._batch_run import run_batch
from tests.fake_openai._batches import BatchRecord, new_id
from tests.fake_openai._http import headers_of, json_response, parse_body
from tests.fake_openai._models import LogEntry
from tests.fake_openai._state import FakeState

Handler = Callable[[Request, bytes, LogEntry], Awaitable[Response]]

_UPLOAD_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
_ENDPOINTS = {
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
}
_CANCELLABLE = {"validating", "in_progress"}


def _error(
    status: int,
    message: str | None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    payload = policy.error_payload(status, message)
    payload["error"]["param"] = param
    return json_response(payload, status, headers)


def parse_multipart(raw: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """A ``multipart/form-data`` body as ``{name: (filename or None, data)}``."""
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if found is None:
        raise ValueError("multipart body without a boundary")
    delimiter = b"\r\n--" + found.group(1).encode("latin-1")
    parts: dict[str, tuple[str | None, bytes]] = {}
    for chunk in (b"\r\n" + raw).split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        text = head.decode("utf-8", "replace")
        name = re.search(r'\bname="([^"]*)"', text)
        filename = re.search(r'\bfilename="([^"]*)"', text)
        if name is not None:
            parts[name.group(1)] = (filename.group(1) if filename else None, data)
    return parts


def batch_routes(state: FakeState) -> list[BaseRoute]:
    """The Files and Batch API routes over ``state`` (its ``batch_store`` and chat answers)."""
    store = state.batch_store
    tasks: set[asyncio.Task[None]] = set()  # strong references, or a running batch may vanish

    def logged(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            scope, raw = request.scope, await request.body()
            form = request.headers.get("content-type", "").startswith("multipart/")
            body = None if form else parse_body(raw)
            entry = LogEntry(monotonic(), scope["method"], scope["path"], headers_of(scope), body)
            state.record(entry)
            response = await handler(request, raw, entry)
            state.finish(entry, monotonic(), response.status_code)
            return response

        return endpoint

    async def upload(request: Request, raw: bytes, entry: LogEntry) -> Response:
        try:
            form = parse_multipart(raw, request.headers.get("content-type", ""))
        except ValueError as error:
            return _error(400, f"Expected a multipart/form-data body: {error}")
        filename, data = form.get("file", (None, b""))
        purpose = form.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        entry.body = {"purpose": purpose, "filename": filename, "bytes": len(data)}
        if "file" not in form:
            return _error(400, "Missing required parameter: 'file'.", "file")
        if purpose not in _UPLOAD_PURPOSES:
            return _error(400, f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        return json_response(store.add_file(data, filename or "upload", purpose).object())

    async def one_file(request: Request, raw: bytes, entry: LogEntry) -> Response:
        file_id = request.path_params["file_id"]
        stored = store.file(file_id)
        if stored is None:
            return _error(404, f"No such File object: {file_id}", "id")
        if request.method == "DELETE":
            store.delete_file(file_id)
            return json_response({"id": file_id, "object": "file", "deleted": True})
        if request.url.path.endswith("/content"):
            return Response(stored.data, media_type="application/octet-stream")
        return json_response(stored.object())

    async def create(request: Request, raw: bytes, entry: LogEntry) -> Response:
        how = store.next_behaviour()
        if how.create_status is not None:
            return _error(how.create_status, None, None, how.create_headers)
        body = parse_body(raw)
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object.")
        endpoint, window = body.get("endpoint"), body.get("completion_window")
        file_id, metadata = body.get("input_file_id"), body.get("metadata")
        if not isinstance(file_id, str):
            return _error(400, "Missing required parameter: 'input_file_id'.", "input_file_id")
        if endpoint not in _ENDPOINTS:
            return _error(400, f"Invalid value for 'endpoint': {endpoint!r}.", "endpoint")
        if endpoint != "/v1/chat/completions":
            return _error(400, "The fake runs /v1/chat/completions batches only.", "endpoint")
        if window != "24h":
            message = f"Invalid value for 'completion_window': {window!r}; only '24h'."
            return _error(400, message, "completion_window")
        if not _valid_metadata(metadata):
            message = "Invalid 'metadata': at most 16 string keys (64 chars) and values (512)."
            return _error(400, message, "metadata")
        stored = store.file(file_id)
        if stored is None:
            return _error(404, f"No such File object: {file_id}", "input_file_id")
        if stored.purpose != "batch":
            message = f"The input file {file_id} has purpose {stored.purpose!r}, not 'batch'."
            return _error(400, message, "input_file_id")
        headers = headers_of(request.scope)
        batch_id = new_id("batch_")
        batch = BatchRecord(batch_id, endpoint, file_id, stored.data, metadata, how, headers)
        store.add_batch(batch)
        task = asyncio.get_running_loop().create_task(run_batch(state, batch))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return json_response(store.object(batch))

    async def batch_list(request: Request, raw: bytes, entry: LogEntry) -> Response:
        limit = _limit(request, 20, 100)
        if isinstance(limit, Response):
            return limit
        return json_response(store.batch_page(limit, request.query_params.get("after")))

    async def file_list(request: Request, raw: bytes, entry: LogEntry) -> Response:
        limit = _limit(request, 10_000, 10_000)
        if isinstance(limit, Response):
            return limit
        query = request.query_params
        newest_first = query.get("order", "desc") != "asc"
        page = store.file_page(limit, query.get("after"), query.get("purpose"), newest_first)
        return json_response(page)

    async def one_batch(request: Request, raw: bytes, entry: LogEntry) -> Response:
        batch_id = request.path_params["batch_id"]
        batch = store.batch(batch_id)
        if batch is None:
            return _error(404, f"No batch found with id '{batch_id}'.")
        if request.url.path.endswith("/cancel"):
            # No await between the check and the update: the batch's task runs on this loop.
            if batch.status in _CANCELLABLE:
                store.update(batch, "cancelling", cancel_requested=True)
            elif batch.status != "cancelling":
                message = f"Cannot cancel a batch with status '{batch.status}'."
                return _error(409, message)
        return json_response(store.object(batch))

    return [
        Route("/v1/files", logged(upload), methods=["POST"]),
        Route("/v1/files", logged(file_list), methods=["GET"]),
        Route("/v1/files/{file_id}", logged(one_file), methods=["GET", "DELETE"]),
        Route("/v1/files/{file_id}/content", logged(one_file), methods=["GET"]),
        Route("/v1/batches", logged(create), methods=["POST"]),
        Route("/v1/batches", logged(batch_list), methods=["GET"]),
        Route("/v1/batches/{batch_id}", logged(one_batch), methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", logged(one_batch), methods=["POST"]),
    ]


def _limit(request: Request, default: int, most: int) -> int | Response:
    """The ``limit`` query parameter, or the 400 answer when it is not 1 to ``most``."""
    text = request.query_params.get("limit", str(default))
    limit = int(text) if text.isdigit() else 0
    if 1 <= limit <= most:
        return limit
    return _error(400, f"Invalid 'limit': {text!r}; 1 to {most}.", "limit")


def _valid_metadata(metadata: Any) -> bool:
    if metadata is None:
        return True
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return False
    return all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
        for k, v in metadata.items()
    )
