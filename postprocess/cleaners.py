"""Cleaners: pure text-to-text functions applied to each raw model answer, in order.

Models wrap answers in Markdown fences, add chatter around code, pad with blank lines or run
long. Each cleaner fixes one of these and nothing else, so a chain of them reads as a list of
decisions (``["strip_code_fences", "strip", "truncate_chars:2000"]``) rather than one regex soup.
Fences follow CommonMark: three or more backticks or tildes, up to three spaces of indentation,
closed by a fence of the same character at least as long; an unclosed fence runs to the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from refine.errors import ConfigError

__all__ = [
    "Cleaner",
    "extract_code_block",
    "normalize_whitespace",
    "strip",
    "strip_code_fences",
    "truncate_chars",
]

Cleaner = Callable[[str], str]
"""The contract of every cleaner: take the answer so far, return the cleaned answer."""

_OPENING = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_CLOSING = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_RUNS = re.compile(r"\n{3,}")

# (index of the opening line, index of the closing line or None if unclosed, indentation)
_Block = tuple[int, int | None, int]


def strip(text: str) -> str:
    """Remove surrounding whitespace."""
    return text.strip()


def strip_code_fences(text: str) -> str:
    """If the whole answer is one fenced block (with or without a language tag), unwrap it.

    Models often fence prose for no reason. Text with anything outside the fence is returned
    unchanged: use :func:`extract_code_block` to pull code out of chatter. An unclosed fence
    (an answer cut off by the token limit) is unwrapped to the end of the text.
    """
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return text
    last = max(i for i, line in enumerate(lines) if line.strip())
    block = _first_block(lines[first : last + 1])
    if block is None or block[0] != 0 or block[1] not in (None, last - first):
        return text
    return _inner(lines[first : last + 1], block)


def extract_code_block(text: str) -> str:
    """Return the body of the first fenced block, dropping any chatter before and after it.

    Text without a fence is returned unchanged: the model may have answered with bare code.
    """
    lines = text.splitlines()
    block = _first_block(lines)
    return text if block is None else _inner(lines, block)


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces and tabs, drop trailing spaces, allow at most one blank line.

    Leading indentation is kept, so nested Markdown lists survive.
    """
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        body = line.lstrip(" \t")
        indent = line[: len(line) - len(body)]
        body = _HSPACE.sub(" ", body).rstrip()
        lines.append(indent + body if body else "")
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines))


def truncate_chars(limit: int) -> Cleaner:
    """A cleaner that cuts answers to at most ``limit`` characters.

    It cuts at the last whitespace when one lies within the final 20% of the limit, so words are
    not split; otherwise it cuts hard at the limit. The result never exceeds ``limit``.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"truncate_chars needs a positive integer limit, got {limit!r}")
    floor = limit - limit // 5

    def truncate(text: str) -> str:
        if len(text) <= limit:
            return text
        if text[limit].isspace():
            return text[:limit].rstrip()
        for i in range(limit - 1, floor - 1, -1):
            if text[i].isspace():
                return text[:i].rstrip()
        return text[:limit]

    truncate.__name__ = truncate.__qualname__ = f"truncate_chars_{limit}"
    return truncate


def _first_block(lines: list[str]) -> _Block | None:
    """Find the first fenced block: where it opens, where it closes, and how far it is indented."""
    for start, line in enumerate(lines):
        opening = _OPENING.fullmatch(line)
        if opening is None:
            continue
        indent, fence, info = opening.groups()
        if fence[0] == "`" and "`" in info:  # ```inline``` code, not a fence
            continue
        for end in range(start + 1, len(lines)):
            closing = _CLOSING.fullmatch(lines[end])
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                return start, end, len(indent)
        return start, None, len(indent)
    return None


def _inner(lines: list[str], block: _Block) -> str:
    """The body of a block, with the fence's own indentation removed from each line."""
    start, end, indent = block
    body = lines[start + 1 : len(lines) if end is None else end]
    return "\n".join(line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in body)
