"""How many of a request's prompt tokens a model slot took from its cache, told in ``usage``.

llama-cpp-python re-uses a computed prompt prefix in two ways: the tokens still in the context
from the slot's previous request, and (with ``cache = True``) a saved model state whose tokens
start the new prompt (``LlamaRAMCache``). Its answers do not say how many tokens that saved.
OpenAI, vLLM and llama.cpp's own server report it as
``usage.prompt_tokens_details.cached_tokens``; this module makes a slot report it too, so a
record's ``usage.cached_tokens`` means the same thing whichever server answered.

How it is counted: for each request, the first ``Llama.eval`` call evaluates the part of the
prompt that was not re-used (``Llama.generate`` drops the re-used prefix before evaluating), so
``cached_tokens = prompt_tokens - len(first eval)``. When the whole prompt was re-used,
llama-cpp-python still evaluates its last token to refresh the logits, so a full hit reads as
``prompt_tokens - 1``. A slot process serves one request at a time (the dispatcher in
:mod:`flows.local.dispatcher` sees to that), so one meter per process needs no locking.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CachedTokensMiddleware", "PromptMeter"]

_COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")


class PromptMeter:
    """Counts the prompt tokens a request had to evaluate, per request."""

    def __init__(self) -> None:
        self.evaluated: int | None = None

    def start(self) -> None:
        """A request begins: forget the previous one's count."""
        self.evaluated = None

    def saw_eval(self, tokens: Sequence[int]) -> None:
        """Record the first evaluation of the request (the prompt's suffix that was not re-used)."""
        if self.evaluated is None:
            self.evaluated = len(tokens)

    def cached(self, prompt_tokens: int) -> int:
        """Prompt tokens taken from the cache: 0 when nothing was evaluated yet."""
        if self.evaluated is None:
            return 0
        return max(0, prompt_tokens - self.evaluated)

    def install(self) -> None:
        """Wrap ``llama_cpp.Llama.eval`` in this process so every evaluation is seen."""
        from llama_cpp import Llama

        original = Llama.eval
        meter = self

        def counted_eval(model: Llama, tokens: Sequence[int]) -> None:
            meter.saw_eval(tokens)
            original(model, tokens)

        Llama.eval = counted_eval  # type: ignore[method-assign,assignment]


def with_cached_tokens(body: bytes, meter: PromptMeter) -> bytes:
    """The JSON answer with ``usage.prompt_tokens_details.cached_tokens`` filled in.

    An answer that is not a JSON object with a ``usage`` holding ``prompt_tokens`` (an error,
    a stream) comes back unchanged.
    """
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return body
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
        return body
    details = usage.get("prompt_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    details["cached_tokens"] = meter.cached(usage["prompt_tokens"])
    usage["prompt_tokens_details"] = details
    return json.dumps(answer).encode("utf-8")


class CachedTokensMiddleware:
    """ASGI middleware: completions answered whole get their cached prompt tokens added.

    Streamed answers (``text/event-stream``) pass through untouched.
    """

    def __init__(self, app: ASGIApp, meter: PromptMeter) -> None:
        self.app = app
        self.meter = meter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in _COMPLETION_PATHS
        ):
            await self.app(scope, receive, send)
            return
        self.meter.start()
        start: Message | None = None
        chunks: list[bytes] = []
        passing_through = False

        async def capture(message: Message) -> None:
            nonlocal start, passing_through
            if message["type"] == "http.response.start":
                kinds = dict(message.get("headers", [])).get(b"content-type", b"")
                passing_through = b"json" not in kinds
                if passing_through:
                    await send(message)
                else:
                    start = message
                return
            if passing_through or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = with_cached_tokens(b"".join(chunks), self.meter)
            assert start is not None
            kept = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            kept.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": kept})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
