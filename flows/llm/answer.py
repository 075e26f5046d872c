"""How the body of an HTTP answer becomes a Completion's fields, whatever the endpoint sent.

- The body is JSON; text in it that is not valid Unicode (a lone surrogate escape such as
  ``"\\ud83d"``, bytes that are not UTF-8) becomes U+FFFD, so no later writer can fail on it.
- An error inside a 200 (``{"error": ...}``, or ``{"status": 503, ...}``, and no ``choices``)
  raises :class:`ErrorAnswer` carrying the HTTP status it names (``429``, ``429.0``, ``"429"``,
  ``"503 Service Unavailable"``, ``"rate_limit_exceeded"``...), so the retry policy treats it
  as that status.
- The answer's text is ``message.content``: a string, or a list of typed parts whose text parts
  are joined (thinking and reasoning parts, and ``reasoning_content``, stay out of it).

Its usage is read by :mod:`flows.llm.usage`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from flows.llm.retry import ErrorAnswer
from refine.jsonl import NESTED_TOO_DEEP

__all__ = [
    "UnusableAnswer",
    "answer_text",
    "decode_body",
    "raise_if_error",
    "token_logprobs",
]

TEXT_PARTS = frozenset({"text", "output_text"})
"""Content part types whose ``text`` is the answer (chat completions, the Responses API)."""

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LEADING_STATUS = re.compile(r"\s*(\d{3})(?!\w)")  # "503", " 503 Service Unavailable"

# Names gateways put in an error's ``type``, ``code`` or ``status`` instead of a number: OpenAI
# and OpenRouter (snake case), Anthropic (``*_error``), Google (``RESOURCE_EXHAUSTED``...).
_NAMED_STATUS = {
    "invalid_request_error": 400,
    "invalid_argument": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "unauthenticated": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found": 404,
    "not_found_error": 404,
    "model_not_found": 404,
    "timeout": 408,
    "request_timeout": 408,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "resource_exhausted": 429,
    "too_many_requests": 429,
    "server_error": 500,
    "api_error": 500,
    "internal": 500,
    "internal_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "service_unavailable": 503,
    "overloaded": 503,
    "overloaded_error": 503,
    "gateway_timeout": 504,
    "deadline_exceeded": 504,
}


class UnusableAnswer(Exception):
    """The body is a chat completion, but what it says cannot be an answer (the reason)."""


# -- the body ------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _TooDeep(json.JSONDecodeError):
    """A body nested deeper than the parsers allow: not JSON, at no one position."""

    def __str__(self) -> str:
        return self.msg


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def decode_body(raw: bytes) -> Any:
    """The JSON value of ``raw``; raises ``json.JSONDecodeError`` when it is not JSON.

    Nesting deeper than either parser allows is not JSON either (``nested too deep``), never
    a RecursionError: the item fails like any unparseable answer and the run goes on.

    orjson refuses a lone surrogate escape and bytes that are not UTF-8; such a body is read
    again by the standard library (which pairs valid surrogates) and what is left becomes U+FFFD.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as strict:
        text = raw.decode("utf-8", "replace")
        try:
            return _scrub(json.loads(text, parse_constant=_refuse_constant))
        except RecursionError:  # nested deeper than the stack (not a ValueError): not JSON
            raise _TooDeep(NESTED_TOO_DEEP, text, 0) from None
        except ValueError:  # not JSON for either parser: report orjson's finding
            raise strict from None


# -- an error inside a 200 -----------------------------------------------------------------


def _status_number(value: Any) -> int | None:
    """An HTTP error status (400-599) from an int, an integral float (``429.0``) or a string
    that is or starts with one (``"502"``, ``"503 Service Unavailable"``), else None."""
    if isinstance(value, str) and (match := _LEADING_STATUS.match(value)):
        value = int(match[1])
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    return None


def _status_of(fields: Sequence[Mapping[str, Any]]) -> int | None:
    """The status the error names: a number in ``code``/``status`` first, then a known name."""
    for where in fields:
        for key in ("code", "status", "status_code"):
            if (number := _status_number(where.get(key))) is not None:
                return number
    for where in fields:
        for key in ("type", "code", "status"):
            name = where.get(key)
            if isinstance(name, str) and name.strip().lower() in _NAMED_STATUS:
                return _NAMED_STATUS[name.strip().lower()]
    return None


def _error_message(error: Any, body: Mapping[str, Any]) -> str:
    if isinstance(error, str) and error.strip():
        return error
    for where in (error, body):
        if isinstance(where, Mapping):
            for key in ("message", "detail"):
                if isinstance(where.get(key), str) and where[key].strip():
                    return str(where[key])
    return quote_body(body, 300)


def quote_body(body: Any, chars: int) -> str:
    """The start of ``body`` as JSON text (at most ``chars`` characters), for a message; a body
    nested past what the encoder takes (orjson: 255 levels) is said to be so, never a crash."""
    try:
        return orjson.dumps(body).decode()[:chars]
    except orjson.JSONEncodeError:
        return "(a body nested too deep to quote)"


def _holds_text(choice: Any) -> bool:
    """Whether a choice carries an answer's text (a refusal or nothing at all is no text)."""
    message = choice.get("message") if isinstance(choice, Mapping) else None
    try:
        return bool(answer_text(message if isinstance(message, Mapping) else {}))
    except UnusableAnswer:
        return False


def _top_level_status(body: Mapping[str, Any]) -> int | None:
    """The error status a body with no ``error`` and no choices names at its top level."""
    for key in ("status", "status_code", "code"):
        if (number := _status_number(body.get(key))) is not None:
            return number
    return None


def raise_if_error(body: Any) -> None:
    """Raise :class:`ErrorAnswer` when ``body`` is an error rather than an answer.

    That is ``{"error": {...}}`` (or a plain string), vLLM's ``{"object": "error", ...}`` or
    a body naming an error status at its top level (``{"status": 503, "message": ...}``,
    ``{"status_code": 503, "detail": ...}``) with no choices, or an error beside (or, as
    OpenRouter sends it, inside) a first choice that holds no text. A choice with text is an
    answer, whatever else the gateway put beside it (many send ``"error": null`` on every
    answer).
    """
    if not isinstance(body, dict):
        return
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if first is not None and _holds_text(first):
        return
    inner = first.get("error") if isinstance(first, Mapping) else None
    error = inner or body.get("error")
    if not error and first is None and body.get("object") == "error":
        error = body
    if not error and first is None and _top_level_status(body) is not None:
        error = body  # {"status": 503, "message": ...}, {"status_code": 503, "detail": ...}
    if not error:
        return
    fields = [f for f in (error, body) if isinstance(f, Mapping)]
    raise ErrorAnswer(_error_message(error, body), _status_of(fields))


# -- the text --------------------------------------------------------------------------------


def _part_type(part: Any) -> str:
    if isinstance(part, Mapping) and isinstance(part.get("type"), str):
        return str(part["type"])
    return type(part).__name__


def _refusal(message: Mapping[str, Any], content: Any) -> str | None:
    """OpenAI's ``message.refusal``, or the text of a ``refusal`` content part."""
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        return refusal
    for part in content if isinstance(content, list) else ():
        if _part_type(part) == "refusal" and isinstance(part.get("refusal"), str):
            return str(part["refusal"])
    return None


def _part_text(part: Any) -> str | None:
    """The text of a text part: ``{"type": "text", "text": "42"}``, or the Assistants API's
    ``{"type": "text", "text": {"value": "42", "annotations": []}}``; None for any other part."""
    if _part_type(part) not in TEXT_PARTS:
        return None
    text = part.get("text")
    if isinstance(text, Mapping):
        text = text.get("value")
    return text if isinstance(text, str) else None


def answer_text(message: Any) -> str:
    """The answer in a choice's ``message``; raises UnusableAnswer when it holds none.

    ``content`` may be a string, null (an empty answer) or a list of typed parts: the text parts
    (``text``, ``output_text``; their ``text`` a string or ``{"value": ...}``) are joined in
    order; others (``thinking``, ``reasoning``...) are the model's working, never the answer. A
    refusal with no text, or a list of parts none of which is text, is refused with what was
    there. ``reasoning_content`` is never read. A ``message`` that is not an object (a bare
    string included: no API sends one, so it is not guessed to be the answer) is refused too;
    a missing one (None) is an empty message.
    """
    if message is None:
        message = {}
    if not isinstance(message, Mapping):
        raise UnusableAnswer(f"the message is a {type(message).__name__}, not an object")
    content = message.get("content")
    if isinstance(content, list):
        texts = [text for part in content if (text := _part_text(part)) is not None]
        text = "".join(texts)
        if texts and text:
            return text
    elif content is None or isinstance(content, str):
        text = content or ""
        if text:
            return text
    else:
        raise UnusableAnswer(f"the message content is a {type(content).__name__}, not text")
    refusal = _refusal(message, content)
    if refusal is not None:
        raise UnusableAnswer(f"the model refused: {refusal!r}")
    if isinstance(content, list) and content and not texts:
        kinds = ", ".join(dict.fromkeys(_part_type(part) for part in content))
        raise UnusableAnswer(f"the message content has no text part (parts: {kinds})")
    return text


def token_logprobs(choice: Mapping[str, Any]) -> tuple[float, ...] | None:
    """The answer tokens' log-probabilities, or None when the endpoint sent none."""
    logprobs = choice.get("logprobs")
    tokens = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(tokens, list):
        return None
    values = []
    for token in tokens:
        value = token.get("logprob") if isinstance(token, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None  # a malformed entry: no logprobs rather than wrong ones
        values.append(float(value))
    return tuple(values)
