"""Cleaners for chatty answers: model talk around the answer, reasoning blocks, JSON, length.

Like :mod:`postprocess.cleaners` (fences, whitespace, length), each one fixes one habit of
models and leaves any text without that habit unchanged, so chains stay predictable. The ones
that take an argument are factories (``truncate_sentences(3)``), named in configuration as
``"truncate_sentences:3"``.
"""

from __future__ import annotations

import json
import re

from postprocess.cleaners import Cleaner
from refine.errors import ConfigError

__all__ = [
    "drop_lines",
    "extract_json",
    "strip_chatter",
    "strip_think",
    "truncate_sentences",
    "truncate_tokens",
]

_INTERJECTION = (
    r"(?:sure|certainly|of\s+course|absolutely|okay|ok|alright|all\s+right|great|no\s+problem)"
)
_ANSWER_NOUN = (
    r"(?:version|draft|text|summary|answer|translation|response|rewrite|paragraph|passage"
    r"|sentence|essay|article|story|email|letter|poem|code|output)"
)
# A lead-in introduces what follows ("Here is the improved version:"); a label names it with an
# adjective and one of the nouns above ("Improved draft:", "**Revised summary:**").
_LEAD_IN = re.compile(
    rf"\s*(?:#{{1,6}}\s+)?(?:{_INTERJECTION}[!,.]*\s+)?(?:\*\*)?"
    r"(?:(?:here(?:'s|’s|\s+is|\s+are)|below\s+(?:is|are)|the\s+following\s+is)[^\n:]{0,80}"
    r"|(?:(?:the|my|an?)\s+)?(?:improved|revised|updated|corrected|rewritten|refined|edited"
    rf"|polished|final)(?:\s+[\w-]+){{0,3}}?\s+{_ANSWER_NOUN}(?:\s*\([^)\n]*\))?)"
    r"(?:\*\*)?:(?:\*\*)?\s*",
    re.IGNORECASE,
)
_LONE_INTERJECTION = re.compile(rf"\s*{_INTERJECTION}[!.]*\s*", re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"\s*(?:(?:please\s+)?let\s+me\s+know\s+if|i\s+hope\s+(?:this|that|it)\s+helps"
    r"|hope\s+(?:this|that|it)\s+helps|feel\s+free\s+to|is\s+there\s+anything\s+else"
    r"|would\s+you\s+like\s+me\s+to|if\s+you\s+(?:have|need|want|would\s+like)\s+any)"
    r"[^\n]{0,160}",
    re.IGNORECASE,
)
_MAX_SIGN_OFF_LINES = 3
# A lead-in on the answer's own line, in the languages refine translates into most, followed by
# the whole answer in quotes: 'Voici la traduction française : "Le chat dort."'. Only taken off
# when the rest of the text is one quoted span, so an answer that merely contains a colon stays.
_INLINE_LEAD_WORDS = (
    r"here(?:'s|’s|\s+is|\s+are)|below\s+is|voici|voilà|hier\s+ist|aquí\s+(?:está|tienes)|ecco"
    r"|eis|the\s+\w+\s+(?:translation|summary|answer)|(?:la\s+|une\s+)?(?:traduction|réponse"
    r"|résumé)|(?:die\s+)?(?:übersetzung|zusammenfassung|antwort)|(?:la\s+)?(?:traducción"
    r"|respuesta|traduzione|risposta|tradução)|translation|summary|answer"
)
_INLINE_LEAD_IN = re.compile(
    rf"\s*(?:{_INTERJECTION}[!,.]*\s+)?(?:\*\*)?(?:{_INLINE_LEAD_WORDS})[^\n:\"“«„]{{0,60}}"
    r"(?:\*\*)?\s?:(?:\*\*)?\s*(?P<body>.+?)\s*",
    re.IGNORECASE | re.DOTALL,
)
_QUOTE_PAIRS = {'"': '"', "“": "”", "«": "»", "„": "“", "'": "'"}

_THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|\Z)")
_PARAGRAPH_BREAK = re.compile(r"[^\S\n]*\n[^\S\n]*\n")
_NOT_SENTENCE_ENDS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "cf"}
)
_TOKEN = re.compile(r"\S+")


def strip_chatter(text: str) -> str:
    """Remove a model's lead-in line and sign-off lines, keeping the answer between them.

    Removed at the start: one line that ends with a colon and either introduces what follows
    ("Here is the improved version:", "Sure! Here's the summary:", "Below is the code:") or labels
    it as a revised answer ("Improved draft:", "**Revised summary:**", "Final answer:"), and a
    lone "Sure!" line before it. Removed at
    the end: up to three lines that start like a sign-off ("Let me know if ...", "I hope this
    helps!", "Feel free to ...", "Is there anything else ...", "Would you like me to ...",
    "If you need any ..."). Chatter on the same line as content is left alone, and an answer that
    is all chatter becomes empty, with one exception: a lead-in followed by the whole answer in
    quotes, in English, French, German, Spanish, Italian or Portuguese (``Voici la traduction
    française : "Le chat dort."``, ``Here is the summary: "..."``) keeps only the quoted text.
    Only use it where such lines cannot belong to the answer: an
    email may well end with "Let me know if ...".
    """
    inline = _INLINE_LEAD_IN.fullmatch(text)
    if inline is not None and (unquoted := _unquote(inline["body"])) is not None:
        return unquoted
    lines = text.split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if not filled:
        return text
    start, end = 0, len(lines)
    if _LEAD_IN.fullmatch(lines[filled[0]]):
        start = filled[0] + 1
    elif (
        len(filled) > 1
        and _LONE_INTERJECTION.fullmatch(lines[filled[0]])
        and _LEAD_IN.fullmatch(lines[filled[1]])
    ):
        start = filled[1] + 1
    kept = [i for i in filled if i >= start]
    for _ in range(_MAX_SIGN_OFF_LINES):
        if not kept or not _SIGN_OFF.fullmatch(lines[kept[-1]]):
            break
        end = kept.pop()
    if start == 0 and end == len(lines):
        return text
    if start:  # drop the blank lines between the lead-in and the answer
        start = kept[0] if kept else end
    if end < len(lines):  # and those between the answer and the sign-off
        end = kept[-1] + 1 if kept else start
    return "\n".join(lines[start:end])


def _unquote(body: str) -> str | None:
    """``body`` without the quotes around all of it, None unless it is one quoted span."""
    closing = _QUOTE_PAIRS.get(body[:1])
    if closing is None or len(body) < 3 or not body.endswith(closing):
        return None
    inner = body[1:-1].strip()
    opening = body[0]
    # "a" and "b" is two quoted spans, not one: the inner text must not hold the quotes again
    if closing in inner or (opening != closing and opening in inner):
        return None
    return inner or None


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` reasoning blocks, which are not part of the answer.

    An unclosed ``<think>`` at the start (reasoning cut off by the token limit) leaves nothing.
    A ``</think>`` with no opening tag before it, as when the chat template put ``<think>`` in the
    prompt, ends reasoning that started with the answer: everything up to it is removed.
    """
    closing, opening = text.find("</think>"), text.find("<think>")
    if closing != -1 and (opening == -1 or closing < opening):
        text = text[closing + len("</think>") :].lstrip()
    text = _THINK_BLOCK.sub("", text)
    return "" if text.lstrip().startswith("<think>") else text


def extract_json(text: str) -> str:
    """Return the first complete JSON object or array in the answer, exactly as written.

    Models surround JSON with prose and fences. Each ``{`` and ``[`` is tried in turn with the
    standard JSON decoder, so braces inside strings and nesting are handled; note that a bracketed
    citation such as ``[1]`` in prose before the object is itself a JSON array. Text without any
    complete JSON value is returned unchanged, for a validator to report.
    """
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        try:
            _, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):  # not JSON here, or absurdly deep brackets
            continue
        return text[start:end]
    return text


def truncate_sentences(count: int) -> Cleaner:
    """A cleaner that keeps the first ``count`` sentences.

    The splitter is deliberately simple: a sentence ends at ``.``, ``!`` or ``?`` (with any
    closing quotes or brackets) followed by whitespace or the end, or at a blank line, so a title
    counts as a sentence. A period after Mr, Mrs, Ms, Dr, Prof, St, Jr, Sr, vs, e.g, i.e or cf
    ends nothing; other abbreviations do. What is kept keeps its original spacing.
    """
    _check_count("truncate_sentences", count)

    def truncate(text: str) -> str:
        previous = seen = 0
        for end in _sentence_ends(text):
            if not text[previous:end].strip():
                continue
            seen, previous = seen + 1, end
            if seen == count:
                return text[:end]
        return text

    truncate.__name__ = truncate.__qualname__ = f"truncate_sentences_{count}"
    return truncate


def truncate_tokens(count: int) -> Cleaner:
    """A cleaner that keeps the first ``count`` whitespace-separated words.

    These are words, not the model's tokens, so the limit means the same for every model.
    What is kept keeps its original spacing and line breaks; trailing whitespace is dropped.
    """
    _check_count("truncate_tokens", count)

    def truncate(text: str) -> str:
        for seen, token in enumerate(_TOKEN.finditer(text), start=1):
            if seen == count:
                return text[: token.end()]
        return text

    truncate.__name__ = truncate.__qualname__ = f"truncate_tokens_{count}"
    return truncate


def drop_lines(pattern: re.Pattern[str]) -> Cleaner:
    """A cleaner that drops every line in which ``pattern`` is found (``re.search``).

    Anchor the pattern (``^Note:``) to match only at the start of a line. Line endings of the
    lines kept are kept.
    """

    def drop(text: str) -> str:
        lines = text.split("\n")
        return "\n".join(line for line in lines if not pattern.search(line.rstrip("\r")))

    drop.__name__ = drop.__qualname__ = "drop_lines"
    return drop


def _sentence_ends(text: str) -> list[int]:
    """Where sentences may end, in order: after end punctuation, or before a blank line."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if not _abbreviation_before(text, m)]
    ends += [m.start() for m in _PARAGRAPH_BREAK.finditer(text)]
    return sorted(ends)


def _abbreviation_before(text: str, match: re.Match[str]) -> bool:
    """Whether a single period ends a known abbreviation ("Dr.", "e.g.") rather than a sentence."""
    if match.group() != ".":
        return False
    start = match.start()
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start : match.start()].lstrip("(\"'“‘[").lower() in _NOT_SENTENCE_ENDS


def _check_count(name: str, count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"{name} needs a positive integer count, got {count!r}")
