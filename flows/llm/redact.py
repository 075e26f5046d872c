"""Secrets out of what the server said: the API key, and anything shaped like one."""

from __future__ import annotations

import re

__all__ = ["KEY_LIKE", "redact"]

KEY_LIKE = re.compile(r"\b(sk|key|token)-[A-Za-z0-9_\-]{6,}")


def redact(text: str, secret: str | None) -> str:
    """``text`` with the API key, and anything shaped like one, replaced by ``***``.

    Error bodies are the server's words, and some proxies echo the key they were sent.
    """
    if secret:
        text = text.replace(secret, "***")
    return KEY_LIKE.sub(r"\1-***", text)
