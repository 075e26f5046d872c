"""Text from a run's records made safe to print: :func:`visible`.

Drafts, critiques, ids and errors are model output or data, and may hold anything. Printed raw
to a terminal, an escape sequence (ESC ``[2J``, ``]0;title BEL``) clears the screen, retitles
the window or recolours what follows; Unicode bidi controls reorder or hide the text around
them (a right-to-left override makes ``evil-id`` read ``di-live``).
"""

from __future__ import annotations

import re

__all__ = ["BIDI_CONTROLS", "visible"]

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""The Unicode bidi controls: ALM, LRM, RLM, the embeddings and overrides LRE RLE PDF LRO RLO
(U+202A-U+202E) and the isolates LRI RLI FSI PDI (U+2066-U+2069)."""

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + "".join(sorted(BIDI_CONTROLS)) + "]")


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    if char in BIDI_CONTROLS:
        return f"<U+{ord(char):04X}>"
    return f"\\x{ord(char):02x}"


def visible(text: str) -> str:
    """``text`` with every character that could act on a terminal or reorder text shown as
    plain characters instead.

    Escaped: the C0 controls but newline and tab (U+0000-U+001F: ESC starts an escape
    sequence, CR overwrites a line, BS erases), DEL and the C1 controls (U+007F-U+009F: CSI
    U+009B and OSC U+009D start sequences on their own), each as ``\\xNN``; and the bidi
    controls of :data:`BIDI_CONTROLS`, each as ``<U+NNNN>``, so an override cannot reverse or
    hide the text after it. Everything else, newline and tab included, is kept as it is.
    """
    return _UNSAFE.sub(_shown, text)
