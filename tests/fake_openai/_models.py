"""The records the fake server trades with tests: scripted replies, log entries, config updates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Reply(BaseModel):
    """One scripted answer; JSON-serializable so a server in another process can be scripted.

    Attributes:
        content: the assistant text for a 200, the error message otherwise; ``None`` means the
            default policy text (or ``"Fake error <status>"``).
        finish_reason: the choice's ``finish_reason`` (e.g. ``"length"``).
        status: a non-200 answers an OpenAI-style ``{"error": {...}}`` body with this status.
        headers: extra response headers, e.g. ``{"Retry-After": "1"}``.
        delay: seconds to wait before answering, on top of the server's latency.
        hang: never answer; the request ends when the client gives up or the server stops.
        raw_body: send exactly this text (as ``application/json``, with ``status``) instead;
            U+DC80..U+DCFF in it send the bytes 0x80..0xFF (``surrogateescape``), so a test can
            send a body that is not valid UTF-8.
        drop_connection: abort the TCP connection without any response.
        usage: the usage object to send instead of the computed one (verbatim).
        stream_error: for ``stream: true``, send an ``{"error": ...}`` event halfway through
            the content deltas and end the stream there (no ``[DONE]``).
        dribble_seconds: spread sending the body (or the stream's deltas) over this long.
        logprobs: per-token log-probabilities sent when the request asks for ``logprobs``
            (tokens are the content's space-split pieces); unset gives -0.5 for each token.
        message_fields: fields set on the answer's ``choices[0].message`` (verbatim, after
            ``content``), e.g. ``content`` as a list of parts, ``refusal``, ``reasoning_content``.
        body_fields: top-level fields set on the answer body (verbatim), e.g. ``error``.
        omit_fields: top-level fields left out of the answer body, e.g. ``usage``, ``choices``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = Field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    raw_body: str | None = None
    drop_connection: bool = False
    usage: dict[str, Any] | None = None
    stream_error: str | None = None
    dribble_seconds: float = 0.0
    logprobs: list[float] | None = None
    message_fields: dict[str, Any] = Field(default_factory=dict)
    body_fields: dict[str, Any] = Field(default_factory=dict)
    omit_fields: list[str] = Field(default_factory=list)


Replies = Iterable[Reply | Mapping[str, Any]]
"""What ``script`` takes: replies, or their JSON-like dicts."""


class ConfigUpdate(BaseModel):
    """Body of ``POST /_control/config``: only the keys present are applied (null clears)."""

    model_config = ConfigDict(extra="forbid")

    latency: float | None = None
    token_rate: float | None = None
    fail_status: int | None = None
    fail_fraction: float | None = None
    fail_headers: dict[str, str] | None = None
    fail_seed: int | None = None


class ScriptRequest(BaseModel):
    """Body of ``POST /_control/script``."""

    model_config = ConfigDict(extra="forbid")

    replies: list[Reply]
    match: str | None = None


class BatchBehaviour(BaseModel):
    """How the fake runs a batch; JSON-serializable so a server in another process can be set.

    Times are seconds of wall clock on the server. Line counts are of lines answered so far.

    Attributes:
        validating_s: time in ``validating`` before the input file is checked.
        line_delay_s: time each line takes to be answered (lines are answered one at a time,
            so a poller sees ``request_counts`` grow).
        finalizing_s: time in ``finalizing`` before ``completed``.
        cancelling_s: time in ``cancelling`` before ``cancelled``.
        hold_after_lines: once this many lines are answered (0: before the first), stay
            ``in_progress`` until ``release_batches()`` or a cancel.
        expire_after_lines: once this many lines are answered, if lines remain, the batch
            becomes ``expired``: the answered lines in the output and error files, each
            unanswered line in the error file with ``error.code`` ``"batch_expired"``.
        fail_validation: fail the batch in validation with this message (no line answered).
        fail_validation_code: the ``errors.data[0].code`` of that failure.
        create_status: answer the ``POST /v1/batches`` itself with this status and an OpenAI
            error body; no batch is created.
        create_headers: headers of that answer, e.g. ``{"Retry-After": "1"}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    validating_s: float = 0.0
    line_delay_s: float = 0.0
    finalizing_s: float = 0.0
    cancelling_s: float = 0.0
    hold_after_lines: int | None = Field(default=None, ge=0)
    expire_after_lines: int | None = Field(default=None, ge=0)
    fail_validation: str | None = None
    fail_validation_code: str = "invalid_request"
    create_status: int | None = None
    create_headers: dict[str, str] = Field(default_factory=dict)


BatchBehaviours = Iterable[BatchBehaviour | Mapping[str, Any]]
"""What ``script_batches`` takes: behaviours, or their JSON-like dicts."""


def as_behaviour(behaviour: BatchBehaviour | Mapping[str, Any]) -> BatchBehaviour:
    """``behaviour`` as a :class:`BatchBehaviour` (a dict is validated: unknown keys fail)."""
    if isinstance(behaviour, BatchBehaviour):
        return behaviour
    return BatchBehaviour.model_validate(behaviour)


class BatchScript(BaseModel):
    """Body of ``POST /_control/batches/script``."""

    model_config = ConfigDict(extra="forbid")

    behaviours: list[BatchBehaviour]


@dataclass(slots=True)
class LogEntry:
    """One request the server received under ``/v1``, as tests check it afterwards.

    Times are ``time.monotonic()`` of the server process; on Linux that clock is shared by all
    processes, so they compare with the client's. ``answered`` stays ``None`` for a request that
    was never answered (a hang); ``status`` stays ``None`` when nothing was sent (hang, drop).
    ``batch_id`` is set on the chat requests the server answered as lines of that batch (their
    ``path`` is ``/v1/chat/completions``, their ``headers`` those of the ``POST /v1/batches``).
    """

    received: float
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    answered: float | None = None
    status: int | None = None
    content: str | None = None
    scripted: bool = False
    stream: bool = field(default=False)
    batch_id: str | None = None

    @property
    def messages(self) -> list[Any]:
        """The chat messages sent, or an empty list when the body had none."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return messages if isinstance(messages, list) else []
