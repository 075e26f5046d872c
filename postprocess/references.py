"""User code named in configuration as ``"package.module:attribute"``: its shape, and its import.

:mod:`postprocess.specs` uses these to tell a reference from ``"name:ARG"``; the
``pydantic_model`` validator uses them to import the model it is given.
"""

from __future__ import annotations

import importlib
import re

from refine.errors import ConfigError

__all__ = ["import_reference", "is_reference"]

_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def is_reference(text: str) -> bool:
    """Whether ``text`` has the shape ``package.module:attribute`` (the attribute may be dotted)."""
    module, sep, attribute = text.partition(":")
    return bool(sep) and bool(_DOTTED.fullmatch(module)) and bool(_DOTTED.fullmatch(attribute))


def import_reference(reference: str, what: str) -> object:
    """Import ``package.module:attribute``; ``what`` names the thing in errors ("validator 'x'").

    Any failure is a :class:`ConfigError` that names the reference and the reason.
    """
    if not is_reference(reference):
        raise ConfigError(f"{what}: {reference!r} is not of the form 'package.module:name'")
    module_name, _, attribute = reference.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # a user module failing at import is a configuration problem
        raise ConfigError(f"{what}: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"{what}: module {module_name!r} has no {attribute!r}") from None
    return target
