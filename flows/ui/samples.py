"""Markdown that shows a few items' drafts step by step, with a word-level diff between them.

Pure text functions (no Prefect), used for the run's markdown artifact and tested on their own.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from flows.ui.run_stats import step_label

__all__ = ["escape_markdown", "samples_markdown", "word_diff"]

_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~])")
MAX_CHARS = 1_500  # per draft shown: the artifact is a glance, the output file has the rest


def escape_markdown(text: str) -> str:
    """Text shown literally in markdown: every character markdown could read as syntax escaped."""
    return _SPECIAL.sub(r"\\\1", text)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " …"


def word_diff(before: str, after: str) -> str:
    """``after`` in markdown, with words removed since ``before`` struck out (``~~old~~``) and
    words added in bold (``**new**``); unchanged words plain. Whitespace is normalised."""
    old, new = before.split(), after.split()
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            parts.append(escape_markdown(" ".join(old[i1:i2])))
            continue
        if op in ("delete", "replace"):
            parts.append(f"~~{escape_markdown(' '.join(old[i1:i2]))}~~")
        if op in ("insert", "replace"):
            parts.append(f"**{escape_markdown(' '.join(new[j1:j2]))}**")
    return " ".join(parts)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def _item_section(record: dict[str, Any]) -> list[str]:
    lines = [
        f"### item `{record.get('id')}` ({record.get('status')}, "
        f"stopped: {record.get('stop_reason')})",
        "",
    ]
    previous: str | None = None
    for draft in record.get("drafts") or []:
        text = _shorten(str(draft.get("text", "")))
        head = f"**{step_label(draft)}**"
        if draft.get("rewards"):
            shown = ", ".join(f"{k} {v:.3g}" for k, v in draft["rewards"].items())
            head += f" · reward {escape_markdown(shown)}"
        if draft.get("problems"):
            head += f" · problems: {escape_markdown('; '.join(draft['problems']))}"
        lines.append(head)
        lines.append("")
        if previous is None:
            lines.append(_quote(escape_markdown(text)))
        elif previous == text:
            lines.append("> *(unchanged)*")
        else:
            lines.append(_quote(word_diff(previous, text)))
        lines.append("")
        previous = text
    return lines


def samples_markdown(records: list[dict[str, Any]], title: str) -> str:
    """The markdown artifact: each sample item's drafts in order, each after the first shown as
    a diff against the one before it."""
    lines = [f"## {escape_markdown(title)}", ""]
    if not records:
        lines.append("No item with two drafts or more in the output yet.")
    else:
        lines.append("Words struck out were removed from the previous draft; bold ones were added.")
        lines.append("")
    for record in records:
        lines.extend(_item_section(record))
    return "\n".join(lines).rstrip() + "\n"
