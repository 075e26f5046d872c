"""One chat completion body answered: shared by ``POST /v1/chat/completions`` and batch lines.

Both take a :class:`ChatTurn` the same way (the scripted replies consumed in the same order), so
a line of a batch gets exactly what the same body sent over HTTP would have got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fake_openai import _policy as policy
from tests.fake_openai._models import Reply
from tests.fake_openai._state import FakeState

_DEFAULT = Reply()  # what an unscripted request gets: the default policy, no faults


def invalid_body(body: Any) -> bytes | None:
    """The 400 error body for something that is not a chat completion request, else ``None``."""
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return None
    return orjson.dumps(
        policy.error_payload(400, "Body must be a JSON object with a 'messages' list")
    )


def failure_of(reply: Reply) -> tuple[int, bytes] | None:
    """The status and body of a reply that is not a normal answer (raw body or error status)."""
    if reply.raw_body is not None:
        return reply.status, reply.raw_body.encode("utf-8", "surrogateescape")
    if reply.status != 200:
        return reply.status, orjson.dumps(policy.error_payload(reply.status, reply.content))
    return None


@dataclass(slots=True)
class ChatAnswer:
    """The normal (200) answer of a turn: its text, the extra choices, usage and model."""

    content: str
    more: list[tuple[str, str]]
    usage: dict[str, Any]
    completion_tokens: int
    model: str


@dataclass(slots=True)
class ChatTurn:
    """A valid chat body and the reply it drew (scripted, fault or the default policy)."""

    body: Mapping[str, Any]
    messages: list[Any]
    messages_json: bytes
    reply: Reply
    scripted: bool

    @classmethod
    def take(cls, state: FakeState, body: Mapping[str, Any]) -> ChatTurn:
        """Draw the reply for ``body`` (consumes a scripted reply when one matches)."""
        messages = body["messages"]
        messages_json = policy.canonical_json(messages)
        seed = body.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):  # scripts can match on it
            messages_json += f"\nseed={seed}".encode()
        reply, scripted = state.next_reply(messages_json)
        return cls(body, messages, messages_json, reply or _DEFAULT, scripted)

    def answer(self, state: FakeState) -> ChatAnswer:
        """The 200 answer; draws the replies of choices 1..n-1 for a request with ``n``."""
        reply = self.reply
        content = reply.content
        if content is None:
            content = policy.default_answer(self.messages, self.messages_json)
        more = self._more_choices(state)
        completion = policy.count_tokens(content) + sum(policy.count_tokens(c) for c, _ in more)
        usage = reply.usage
        if usage is None:
            usage = policy.make_usage(policy.prompt_tokens(self.messages), completion)
        model = self.body.get("model") or "fake-model"
        return ChatAnswer(content, more, usage, completion, str(model))

    def completion_body(self, answer: ChatAnswer) -> bytes:
        """The non-streaming ``chat.completion`` body of ``answer``."""
        reply = self.reply
        logprobs = None
        if self.body.get("logprobs"):
            logprobs = policy.logprobs_object(answer.content, reply.logprobs)
        return policy.completion_body(
            answer.model,
            answer.content,
            reply.finish_reason,
            answer.usage,
            logprobs,
            message_fields=reply.message_fields,
            body_fields=reply.body_fields,
            omit_fields=reply.omit_fields,
            more_choices=answer.more,
        )

    def _more_choices(self, state: FakeState) -> list[tuple[str, str]]:
        """Choices 1 to n-1 of a request with ``n`` > 1: each the next scripted reply for it,
        else the default answer of the messages with ``choice=<i>`` appended to the hash."""
        n = self.body.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            return []
        found = []
        for index in range(1, n):
            reply, _ = state.next_reply(self.messages_json)
            if reply is not None and reply.content is not None and reply.status == 200:
                found.append((reply.content, reply.finish_reason))
            else:
                hashed = self.messages_json + f"\nchoice={index}".encode()
                found.append((policy.default_answer(self.messages, hashed), "stop"))
        return found
