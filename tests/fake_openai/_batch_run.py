"""Running one batch on the server's loop: validating, in_progress, finalizing, completed.

Each line is answered by :class:`ChatTurn` exactly as ``POST /v1/chat/completions`` answers the
same body (same scripts consumed, same default policy, same fail_rate faults) and logged as a
chat request with ``batch_id`` set. Timing comes from the batch's :class:`BatchBehaviour`; the
server's latency, token rate and a reply's delay or dribble do not apply to batch lines.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

import orjson

from tests.fake_openai._batches import BatchRecord, BatchStore, new_id
from tests.fake_openai._chat import ChatTurn, failure_of, invalid_body
from tests.fake_openai._models import LogEntry
from tests.fake_openai._state import FakeState

_POLL_S = 0.005  # how often a waiting batch looks for a cancel, a release or a reset
_CHAT = "/v1/chat/completions"
_EXPIRED = "This request could not be executed before the completion window expired."
_CANCELLED = "This request was not executed because the batch was cancelled."


_NOT_JSON = "This line is not parseable as valid JSON."
_DUPLICATE = (
    "The custom_id for this request is a duplicate of another request. "
    "The custom_id parameter must be unique for each request in a batch."
)


def _problem(
    code: str, message: str, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def validate(
    data: bytes, endpoint: str, max_requests: int, max_bytes: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input file's requests, and the ``errors.data`` that fail the batch (line numbers
    count from 1, blank lines included)."""
    if len(data) > max_bytes:
        message = f"The input file is {len(data):,} bytes; a batch input file may hold at most"
        return [], [_problem("file_too_large", f"{message} {max_bytes:,} bytes.")]
    rows = [(n, raw) for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    if not rows:
        return [], [_problem("empty_file", "The batch input file is empty.")]
    if len(rows) > max_requests:
        message = f"The input file has {len(rows):,} requests; a batch may hold at most"
        return [], [_problem("too_many_requests", f"{message} {max_requests:,}.")]
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[Any] = set()
    for number, raw in rows:
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            errors.append(_problem("invalid_json_line", _NOT_JSON, number))
            continue
        found = _line_problem(line, endpoint, seen, models)
        if found is not None:
            errors.append(_problem(found[0], found[1], number, found[2]))
        lines.append(line)
    return lines, errors


def _line_problem(
    line: dict[str, Any], endpoint: str, seen: set[str], models: set[Any]
) -> tuple[str, str, str] | None:
    """``(code, message, param)`` of what is wrong with one request line, if anything."""
    custom_id, body = line.get("custom_id"), line.get("body")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", _DUPLICATE, "custom_id"
    seen.add(custom_id)
    if line.get("method") != "POST":
        method = line.get("method")
        return "invalid_method", f"Invalid method {method!r}: batch requests use 'POST'.", "method"
    if line.get("url") != endpoint:
        url = line.get("url")
        message = f"The url {url!r} does not match the batch's endpoint {endpoint!r}."
        return "invalid_url", message, "url"
    if not isinstance(body, dict):
        return "invalid_body", "The 'body' of a request must be a JSON object.", "body"
    if "model" in body:
        models.add(body["model"])
        if len(models) > 1:
            return "mismatched_model", "All requests in a batch must use the same model.", "model"
    return None


def _result(custom_id: str, status: int, body: Any) -> bytes:
    response = {"status_code": status, "request_id": new_id("req_"), "body": body}
    line = {"id": new_id("batch_req_"), "custom_id": custom_id, "response": response}
    return orjson.dumps({**line, "error": None}) + b"\n"


def _error_line(custom_id: str, code: str, message: str) -> bytes:
    error = {"code": code, "message": message}
    line = {"id": new_id("batch_req_"), "custom_id": custom_id, "response": None, "error": error}
    return orjson.dumps(line) + b"\n"


def _as_json(data: bytes) -> Any:
    try:
        return orjson.Fragment(orjson.dumps(orjson.loads(data)))
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def answer_line(
    state: FakeState, batch: BatchRecord, line: dict[str, Any], received: float
) -> tuple[bool, bytes]:
    """Answer one request of ``batch``: whether it succeeded, and its output or error line."""
    body, custom_id = line["body"], line["custom_id"]
    entry = LogEntry(received, "POST", _CHAT, batch.headers, body, batch_id=batch.id)
    content, usage = None, None
    invalid = invalid_body(body)
    if invalid is not None:
        state.record(entry)
        status, data = 400, invalid
    else:
        turn = ChatTurn.take(state, body)
        entry.scripted = turn.scripted
        state.record(entry)
        if turn.reply.hang:  # never answered: the log keeps status and answered None
            state.batch_store.count(batch, False, None)
            return False, _error_line(custom_id, "request_timeout", "The request timed out.")
        if turn.reply.drop_connection:
            state.finish(entry, monotonic(), None)
            state.batch_store.count(batch, False, None)
            return False, _error_line(custom_id, "server_error", "The connection was lost.")
        failure = failure_of(turn.reply)
        if failure is None:
            answer = turn.answer(state)
            status, data = 200, turn.completion_body(answer)
            content, usage = answer.content, answer.usage
        else:
            status, data = failure
    state.finish(entry, monotonic(), status, content)
    state.batch_store.count(batch, status == 200, usage)
    return status == 200, _result(custom_id, status, _as_json(data))


async def _wait(
    store: BatchStore,
    batch: BatchRecord,
    seconds: float,
    *,
    hold: bool = False,
    cancellable: bool = True,
) -> bool:
    """Wait ``seconds`` (or, with ``hold``, until released), cut short by a cancel request
    when ``cancellable``; False when a reset forgot the batch, so its task must stop."""
    deadline = monotonic() + seconds
    while store.alive(batch):
        if cancellable and batch.cancel_requested:
            return True
        if batch.released if hold else monotonic() >= deadline:
            return True
        await asyncio.sleep(_POLL_S if hold else min(_POLL_S, deadline - monotonic()))
    return False


async def run_batch(state: FakeState, batch: BatchRecord) -> None:
    """Take ``batch`` from ``validating`` to its end; a bug fails it with the error shown."""
    try:
        await _run(state, state.batch_store, batch)
    except Exception as error:  # a stuck batch would hide the bug; a failed one shows it
        problem = _problem("fake_server_error", f"fake server bug: {error!r}")
        state.batch_store.update(batch, "failed", errors=[problem])
        raise


async def _run(state: FakeState, store: BatchStore, batch: BatchRecord) -> None:
    how = batch.behaviour
    if not await _wait(store, batch, how.validating_s):
        return
    if batch.cancel_requested:
        if await _wait(store, batch, how.cancelling_s, cancellable=False):
            store.update(batch, "cancelled")
        return
    lines, errors = validate(batch.input, batch.endpoint, store.max_requests, store.max_bytes)
    if how.fail_validation is not None:
        errors = [_problem(how.fail_validation_code, how.fail_validation)]
    if errors:
        store.update(batch, "failed", errors=errors)
        return
    model = next((ln["body"].get("model") for ln in lines if "model" in ln["body"]), None)
    store.update(batch, "in_progress", total=len(lines), model=model)
    output: list[bytes] = []
    failed: list[bytes] = []
    done = 0
    while True:
        if how.hold_after_lines == done and not await _wait(store, batch, 0, hold=True):
            return
        if batch.cancel_requested or done == len(lines) or how.expire_after_lines == done:
            break
        received = monotonic()
        if not await _wait(store, batch, how.line_delay_s):
            return
        if batch.cancel_requested:
            break
        ok, result = answer_line(state, batch, lines[done], received)
        (output if ok else failed).append(result)
        done += 1
        await asyncio.sleep(0)  # let polls and cancels in between lines
    if batch.cancel_requested:
        end, code, message, pause = "cancelled", "batch_cancelled", _CANCELLED, how.cancelling_s
    elif done < len(lines):
        end, code, message, pause = "expired", "batch_expired", _EXPIRED, 0.0
    else:
        end, code, message, pause = "completed", "", "", how.finalizing_s
        store.update(batch, "finalizing")
    if not await _wait(store, batch, pause, cancellable=False):
        return
    rest = [_error_line(line["custom_id"], code, message) for line in lines[done:]]
    failed.extend(rest)
    files = {
        "output_file_id": _store_file(store, batch, "output", output),
        "error_file_id": _store_file(store, batch, "error", failed),
    }
    store.update(batch, end, failed=batch.failed + len(rest), **files)


def _store_file(store: BatchStore, batch: BatchRecord, kind: str, lines: list[bytes]) -> str | None:
    if not lines:
        return None
    return store.add_file(b"".join(lines), f"{batch.id}_{kind}.jsonl", "batch_output").id
