"""What the fake server says: the default answer policy and OpenAI-shaped bodies."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from typing import Any

import orjson

_ids = itertools.count(1)

# OpenAI's (type, code) for common statuses, so SDK error classes and retry logic see real shapes.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def canonical_json(messages: Any) -> bytes:
    """Messages as compact JSON with sorted keys: what the answer hash and script matches see.

    Equal to ``json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    encoded as UTF-8 for ordinary (string/int) message data.
    """
    return orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)


def content_text(content: Any) -> str:
    """The text of a message content, whether a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_line(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            for line in reversed(content_text(message.get("content")).splitlines()):
                if line.strip():
                    return line.strip()[:200]
            return ""
    return ""


_DSPY_REQUEST = re.compile(r"Respond with the corresponding output fields, (.*)", re.DOTALL)
_DSPY_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")


def _dspy_output_fields(messages: list[Any]) -> list[str]:
    """The output fields a DSPy ChatAdapter prompt asks for, in order; [] for other prompts."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            asked = _DSPY_REQUEST.search(content_text(message.get("content")))
            if asked is None:
                return []
            return [f for f in _DSPY_FIELD.findall(asked.group(1)) if f != "completed"]
    return []


def default_answer(messages: list[Any], messages_json: bytes | None = None) -> str:
    """The "echo" policy: ``draft-<sha256(canonical_json)[:10]> <last user line[:200]>``.

    A prompt in DSPy's chat-adapter layout gets each output field it asks for between
    ``[[ ## field ## ]]`` markers, then ``[[ ## completed ## ]]``, so DSPy parses the answer and
    does its real work in benchmarks instead of failing on the format.
    """
    if messages_json is None:
        messages_json = canonical_json(messages)
    digest = hashlib.sha256(messages_json).hexdigest()[:10]
    fields = _dspy_output_fields(messages)
    if fields:
        parts = [f"[[ ## {field} ## ]]\ndraft-{digest} {field}\n" for field in fields]
        return "\n".join([*parts, "[[ ## completed ## ]]"])
    return f"draft-{digest} {_last_user_line(messages)}"


def count_tokens(text: str) -> int:
    """Whitespace-split words: deterministic and cheap, good enough for usage accounting."""
    return len(text.split())


def prompt_tokens(messages: list[Any]) -> int:
    """Tokens of all message contents together."""
    return sum(
        count_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict)
    )


def make_usage(prompt: int, completion: int) -> dict[str, Any]:
    """A usage object as OpenAI sends it."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def new_id() -> str:
    """A unique completion id for this process."""
    return f"chatcmpl-fake{next(_ids):010d}"


def logprobs_object(content: str, values: list[float] | None) -> dict[str, Any]:
    """OpenAI's ``choices[0].logprobs`` for ``content``: one entry per space-split piece."""
    pieces = stream_pieces(content)
    numbers = values if values is not None else [-0.5] * len(pieces)
    return {
        "content": [
            {"token": piece, "logprob": value, "bytes": None, "top_logprobs": []}
            for piece, value in zip(pieces, numbers, strict=False)
        ],
        "refusal": None,
    }


def completion_body(
    model: str,
    content: str,
    finish_reason: str,
    usage: dict[str, Any],
    logprobs: dict[str, Any] | None = None,
    *,
    message_fields: dict[str, Any] | None = None,
    body_fields: dict[str, Any] | None = None,
    omit_fields: list[str] | None = None,
    more_choices: list[tuple[str, str]] | None = None,
) -> bytes:
    """A non-streaming ``chat.completion`` body; ``logprobs`` when the request asked for them.

    ``message_fields`` and ``body_fields`` are set on the message and the body as given;
    ``omit_fields`` names top-level fields to leave out; ``more_choices`` are the
    ``(content, finish_reason)`` of choices 1, 2, ... (a request with ``n``).
    """
    message = {"role": "assistant", "content": content, "refusal": None, **(message_fields or {})}
    body = {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
        "usage": usage,
        "system_fingerprint": None,
        **(body_fields or {}),
    }
    for index, (text, finish) in enumerate(more_choices or (), start=1):
        more = {"role": "assistant", "content": text, "refusal": None}
        body["choices"].append(
            {"index": index, "message": more, "logprobs": None, "finish_reason": finish}
        )
    for name in omit_fields or ():
        body.pop(name, None)
    return orjson.dumps(body)


def sse(payload: Any) -> bytes:
    """One server-sent event line carrying ``payload`` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def stream_pieces(content: str) -> list[str]:
    """Split content into word-sized deltas that join back to exactly ``content``."""
    words = content.split(" ")
    return [w + " " for w in words[:-1]] + ([words[-1]] if words[-1] else [])


def error_payload(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object for ``status``."""
    kind, code = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {
        "error": {
            "message": message or f"Fake error {status}",
            "type": kind,
            "param": None,
            "code": code,
        }
    }
