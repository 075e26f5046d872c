"""Batch input and output files in the OpenAI Batch format (JSON Lines).

Input line: ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; output
and error lines: ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`` (https://platform.openai.com/docs/guides/batch, "Preparing your batch file" and
"Retrieving the results"). The same input files feed ``vllm run-batch``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from flows.llm.retry import RETRYABLE_STATUS
from refine.errors import ConfigError

__all__ = [
    "CHAT_URL",
    "BatchResult",
    "batch_errors",
    "custom_id_of",
    "input_line",
    "parse_results",
    "provider_latency",
    "retryable",
    "split_lines",
]

logger = logging.getLogger(__name__)

CHAT_URL = "/v1/chat/completions"


def custom_id_of(body: Mapping[str, Any]) -> str:
    """The request's ``custom_id``: a hash of its body, so the same request rendered again
    after a restart has the same id (and is found in the batch it was submitted in).

    Two identical requests in one round are one request: they share its answer, as they would
    share a cached one.
    """
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return "req-" + hashlib.sha256(canonical).hexdigest()[:40]


def input_line(custom_id: str, body: Mapping[str, Any]) -> bytes:
    """One line of a batch input file, newline included."""
    line = {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": body}
    return orjson.dumps(line) + b"\n"


def split_lines(
    lines: Iterable[tuple[str, bytes]], max_requests: int, max_bytes: int
) -> list[list[tuple[str, bytes]]]:
    """``(custom_id, line)`` pairs cut into files of at most ``max_requests`` lines and
    ``max_bytes`` bytes, in order.

    Raises:
        ConfigError: one request alone is bigger than ``max_bytes``.
    """
    files: list[list[tuple[str, bytes]]] = []
    current: list[tuple[str, bytes]] = []
    size = 0
    for custom_id, line in lines:
        if len(line) > max_bytes:
            raise ConfigError(
                f"request {custom_id} is {len(line):,} bytes, more than a batch input file may "
                f"hold ([batch] max_file_bytes = {max_bytes:,})"
            )
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            files.append(current)
            current, size = [], 0
        current.append((custom_id, line))
        size += len(line)
    if current:
        files.append(current)
    return files


@dataclass(frozen=True)
class BatchResult:
    """One request's line of a batch's output or error file.

    ``status``: the HTTP status the request got (None when the line carries only ``error``);
    ``body``: the response body (a chat completion for 200, an error object otherwise);
    ``error``: the line's own ``error`` object, when the request never reached the model.
    """

    status: int | None
    body: Any
    error: Mapping[str, Any] | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200 and isinstance(self.body, dict)

    def message(self) -> str:
        """What went wrong, in the provider's words."""
        for source in (self.error, self.body.get("error") if isinstance(self.body, dict) else None):
            if isinstance(source, Mapping) and source.get("message"):
                return str(source["message"])
        return f"status {self.status}"


def parse_results(data: bytes, source: str) -> dict[str, BatchResult]:
    """The results of an output or error file by ``custom_id``; a line that cannot be read
    is skipped with a warning (its request counts as unanswered and is asked again)."""
    found: dict[str, BatchResult] = {}
    bad = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            custom_id = row["custom_id"]
            response = row.get("response") or {}
            status = response.get("status_code")
            found[str(custom_id)] = BatchResult(
                status=status if isinstance(status, int) else None,
                body=response.get("body"),
                error=row.get("error") if isinstance(row.get("error"), dict) else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            bad += 1
    if bad:
        logger.warning(
            "%s: %d line(s) could not be read; their requests are asked again", source, bad
        )
    return found


def retryable(result: BatchResult) -> bool:
    """A request's error worth asking again: a rate limit, a timeout or a server error."""
    status = result.status
    return status is None or status in RETRYABLE_STATUS or status >= 500


def provider_latency(state: dict[str, Any]) -> float | None:
    """Seconds from the batch's creation to its end, by the provider's own timestamps."""
    created = state.get("created_at")
    ended = next(
        (
            state[k]
            for k in ("completed_at", "expired_at", "cancelled_at", "failed_at")
            if state.get(k)
        ),
        None,
    )
    if isinstance(created, int | float) and isinstance(ended, int | float) and ended >= created:
        return float(ended - created)
    return None


def batch_errors(state: Mapping[str, Any]) -> tuple[set[str], str]:
    """A failed batch's error codes, and its first three errors as one line of text (with
    the input line each names)."""
    errors = [e for e in ((state.get("errors") or {}).get("data") or []) if isinstance(e, dict)]
    described = "; ".join(
        f"line {e['line']}: {e.get('message')}" if e.get("line") else str(e.get("message"))
        for e in errors[:3]
    )
    return {str(e.get("code")) for e in errors}, described
