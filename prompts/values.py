"""How a value prints in a prompt: ``{{ value }}`` in any template goes through :func:`show_value`.

The template environment (:mod:`prompts.loader`) installs it as Jinja's ``finalize``, so every
template, packaged or the user's, shows row values the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["show_value"]


def show_value(value: object) -> object:
    """What ``{{ value }}`` prints: JSON text for objects and lists, JSON's ``true``/``false``
    for booleans, nothing for None; anything else as Jinja prints it (text as is, numbers).

    Row fields come from JSON (or CSV), so a nested value and a top-level one read the same way
    in the prompt as in the data: ``{"ok": true}`` and ``true``, never Python's ``{'ok': True}``
    and ``True``. None is an absent optional value (the templates test for it), so it shows as
    nothing rather than Python's ``None``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value
