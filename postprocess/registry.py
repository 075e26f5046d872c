"""Name cleaners in configuration: a registry of factories and a parser for cleaner specs.

A spec is a registered name (``"strip"``), a name with one integer argument
(``"truncate_chars:2000"``), or ``"package.module:function"`` naming a user cleaner to import.
The registry is an object built fresh by :func:`default_cleaners` for each run, never a mutated
module global, so one run's registrations cannot leak into another.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence

from postprocess.chain import CleanerChain
from postprocess.cleaners import (
    Cleaner,
    extract_code_block,
    normalize_whitespace,
    strip,
    strip_code_fences,
    truncate_chars,
)
from refine.errors import ConfigError

__all__ = ["CleanerFactory", "CleanerRegistry", "build_chain", "default_cleaners"]

CleanerFactory = Callable[..., Cleaner]
"""Builds a cleaner from a spec's arguments: none (``"strip"``) or one int (``"name:2000"``)."""

_INTEGER = re.compile(r"[+-]?\d+")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class CleanerRegistry:
    """Maps cleaner names to factories and turns specs into cleaners."""

    def __init__(self, factories: Mapping[str, CleanerFactory] | None = None) -> None:
        self._factories: dict[str, CleanerFactory] = {}
        for name, factory in (factories or {}).items():
            self.register(name, factory)

    def register(self, name: str, factory: CleanerFactory) -> None:
        """Add or replace a cleaner; the name must be an identifier so specs parse one way."""
        if not name.isidentifier():
            raise ConfigError(f"cleaner names must be identifiers, got {name!r}")
        self._factories[name] = factory

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def copy(self) -> CleanerRegistry:
        """An independent registry with the same entries."""
        return CleanerRegistry(self._factories)

    def resolve(self, spec: str) -> Cleaner:
        """The cleaner a spec names; unknown names fail with the list of known ones."""
        name, sep, argument = spec.strip().partition(":")
        if name in self._factories:
            if sep and not _INTEGER.fullmatch(argument):
                raise ConfigError(f"cleaner spec {spec!r}: the argument must be an integer")
            return self._build(spec, name, (int(argument),) if sep else ())
        if sep and _DOTTED.fullmatch(name) and _DOTTED.fullmatch(argument):
            return _import_cleaner(spec, name, argument)
        raise ConfigError(
            f"unknown cleaner {name!r}; known cleaners: {', '.join(self.names())}; "
            "a user cleaner is named as 'package.module:function'"
        )

    def build_chain(self, specs: Sequence[str]) -> CleanerChain:
        """Resolve every spec up front, so a typo fails before the first model call."""
        if isinstance(specs, str):
            raise ConfigError(f"cleaners must be a list of specs, got the string {specs!r}")
        return CleanerChain(tuple(specs), tuple(self.resolve(spec) for spec in specs))

    def _build(self, spec: str, name: str, args: tuple[int, ...]) -> Cleaner:
        factory = self._factories[name]
        try:
            inspect.signature(factory).bind(*args)
        except TypeError:
            usage = "takes no argument" if args else f"needs an integer argument ('{name}:1000')"
            raise ConfigError(f"cleaner spec {spec!r}: {name} {usage}") from None
        except ValueError:  # no introspectable signature (some builtins): just call it
            pass
        return factory(*args)


def default_cleaners() -> CleanerRegistry:
    """A fresh registry holding the built-in cleaners."""
    return CleanerRegistry(
        {
            "strip": lambda: strip,
            "strip_code_fences": lambda: strip_code_fences,
            "extract_code_block": lambda: extract_code_block,
            "normalize_whitespace": lambda: normalize_whitespace,
            "truncate_chars": truncate_chars,
        }
    )


def build_chain(specs: Sequence[str], registry: CleanerRegistry | None = None) -> CleanerChain:
    """Build a chain from specs, using the built-in cleaners unless a registry is given."""
    return (registry or default_cleaners()).build_chain(specs)


def _import_cleaner(spec: str, module_name: str, attribute: str) -> Cleaner:
    """Import ``module:function`` (the attribute may be dotted) and check it is callable."""
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # a user module failing at import is a configuration problem
        raise ConfigError(f"cleaner {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"cleaner {spec!r}: {module_name} has no {attribute!r}") from None
    if not callable(target):
        raise ConfigError(f"cleaner {spec!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[return-value]
