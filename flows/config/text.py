"""What text a configuration may hold: values, paths and the API key as they must travel.

Python hands over command-line arguments, environment variables and file names whose bytes are
not UTF-8 as lone surrogates (PEP 383). Such text cannot be encoded into a request body, a cache
key, a Prefect parameter or a record, so it is refused before the run starts, naming where it
came from. An API key must also fit in an HTTP header.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from refine.errors import ConfigError
from refine.jsonl import unpaired_surrogate

__all__ = ["header_safe_key", "path_not_text", "refuse_invalid_text", "refuse_paths_not_text"]


def _invalid_text(value: Any, where: str) -> Iterator[str]:
    """``where`` for each text or path in ``value`` (a layer's tree) that is not valid Unicode: a
    lone surrogate, which is how Python hands over command-line arguments, environment variables
    and file names whose bytes are not UTF-8 (PEP 383)."""
    if isinstance(value, str):
        if why := unpaired_surrogate(value):
            yield f"  {where}: {why}"
    elif isinstance(value, Path):
        if why := path_not_text(value):
            yield f"  {where}: {why}"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _invalid_text(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _invalid_text(item, f"{where}.{index}")


def path_not_text(path: Path) -> str | None:
    """Why ``path`` cannot be recorded, or None when it can: a name whose bytes are not UTF-8 is
    a valid Linux file name, but a run's paths travel as text (Prefect parameters, the records,
    the artifacts), and such a name cannot be encoded as text."""
    text = str(path)
    if unpaired_surrogate(text) is None:
        return None
    index, char = next((i, c) for i, c in enumerate(text) if "\ud800" <= c <= "\udfff")
    byte = f"the byte 0x{ord(char) - 0xDC00:02x}" if ord(char) >= 0xDC80 else f"{char!a}"
    return (
        f"the path {text!a} holds {byte} at character {index + 1} that is not UTF-8 text: "
        "a run records its paths as text (Prefect parameters, records); rename it"
    )


def refuse_paths_not_text(**paths: Path | None) -> None:
    """Raise ConfigError for the first of ``paths`` (by option name, ``output`` for
    ``--output``; upper case for an argument) whose name is not UTF-8 text (see
    :func:`path_not_text`); the paths inside a configuration are checked with it."""
    for name, path in paths.items():
        if path is not None and (why := path_not_text(path)):
            label = name if name.isupper() else f"--{name.replace('_', '-')}"
            raise ConfigError(f"{label}: {why}")


def refuse_invalid_text(source: str, layer: dict[str, Any]) -> None:
    """Raise ConfigError naming each value of ``layer`` that is not valid Unicode text, before it
    reaches a request body, a cache key or a Prefect parameter (each would fail to encode)."""
    if lines := list(_invalid_text(layer, "")):
        raise ConfigError("\n".join([f"{source}: invalid configuration", *lines]))


def header_safe_key(key: str, source: str) -> SecretStr:
    """``key`` without surrounding whitespace (a pasted key often ends in a newline); raises
    ConfigError, naming the position and the character but never the key, when what is left
    cannot travel in an HTTP header (visible ASCII only, RFC 9110 section 5.5): a zero-width
    space or a typographic dash from a copy, or bytes that are not UTF-8."""
    key = key.strip()
    for index, char in enumerate(key):
        if not " " < char < "\x7f":
            raise ConfigError(
                f"the API key from {source} holds a character that cannot be sent in an HTTP "
                f"header: U+{ord(char):04X} at character {index + 1}; copy the key again"
            )
    return SecretStr(key)
