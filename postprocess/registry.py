"""Name cleaners in configuration: a registry of factories and a parser for cleaner specs.

A spec is a registered name (``"strip"``), a name with one argument after the first colon
(``"truncate_chars:2000"``, ``"drop_lines:^Note: .*"``: the rest of the spec exactly, colons and
spaces included), or ``"package.module:function"`` naming a user cleaner to import; a registered
name wins over an import. Each name declares the kind of argument it takes
(:data:`INTEGER_ARGUMENT`, :data:`REGEX_ARGUMENT` or none), so a bad one fails when the chain is
built, naming the spec.
:class:`CleanerRegistry` is a :class:`~postprocess.specs.FactoryRegistry` like the validator and
reward registries, so names, copies and unknown-name errors work and read the same in all three.
The registry is an object built fresh by :func:`default_cleaners` for each run, never a mutated
module global, so one run's registrations cannot leak into another.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence

from postprocess.chain import CleanerChain
from postprocess.cleaners import (
    Cleaner,
    extract_code_block,
    normalize_whitespace,
    strip,
    strip_code_fences,
    truncate_chars,
)
from postprocess.filters import reject_empty, reject_if, reject_longer, reject_unless
from postprocess.specs import Argument, FactoryRegistry, import_reference, is_reference
from postprocess.text_cleaners import (
    drop_lines,
    extract_json,
    strip_chatter,
    strip_think,
    truncate_sentences,
    truncate_tokens,
)
from refine.errors import ConfigError

__all__ = [
    "INTEGER_ARGUMENT",
    "REGEX_ARGUMENT",
    "Argument",
    "CleanerFactory",
    "CleanerRegistry",
    "build_chain",
    "default_cleaners",
]

CleanerFactory = Callable[..., Cleaner]
"""Builds a cleaner from a spec's argument: none (``"strip"``) or one (``"name:2000"``)."""

_INTEGER = re.compile(r"[+-]?\d+")


def _parse_integer(text: str) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise ValueError(f"the argument must be an integer, got {text!r}")
    return int(text)


def _parse_regex(text: str) -> re.Pattern[str]:
    if not text:
        raise ValueError("the pattern is empty, and an empty pattern matches everything")
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"{text!r} is not a valid regular expression: {exc}") from None


INTEGER_ARGUMENT = Argument("an integer", "1000", _parse_integer)
"""``name:1000``: a whole number; the factory checks its range."""
REGEX_ARGUMENT = Argument("a regular expression", "^Note:", _parse_regex)
"""``name:^Note:``: a Python regular expression, compiled when the chain is built."""


class CleanerRegistry(FactoryRegistry[CleanerFactory]):
    """Maps cleaner names to factories and turns specs into cleaners."""

    kind = "cleaner"

    def register(
        self, name: str, factory: CleanerFactory, argument: Argument | None = None
    ) -> None:
        """Add or replace a cleaner; the factory is called with the parsed argument, or with none
        when ``argument`` is None, which it must accept."""
        if name.isidentifier():  # else the base class says the name is wrong
            _check_arity(name, factory, argument)
        super().register(name, factory, argument)

    def resolve(self, spec: str) -> Cleaner:
        """The cleaner a spec names; unknown names fail with the list of known ones."""
        name, sep, raw = spec.lstrip().partition(":")
        name = name.strip()
        if name in self._factories:
            return self._build(spec, name, raw if sep else None)
        reference = f"{name}:{raw.strip()}"
        if sep and is_reference(reference):
            return _import_cleaner(spec, reference)
        raise self.unknown(name)

    def build_chain(self, specs: Sequence[str]) -> CleanerChain:
        """Resolve every spec up front, so a typo fails before the first model call."""
        if isinstance(specs, str):
            raise ConfigError(f"cleaners must be a list of specs, got the string {specs!r}")
        return CleanerChain(tuple(specs), tuple(self.resolve(spec) for spec in specs))

    def _build(self, spec: str, name: str, raw: str | None) -> Cleaner:
        argument = self._arguments.get(name)
        if argument is None and raw is not None:
            raise ConfigError(f"cleaner spec {spec!r}: {name} takes no argument")
        if argument is not None and raw is None:
            usage = f"needs {argument.what} argument ('{name}:{argument.example}')"
            raise ConfigError(f"cleaner spec {spec!r}: {name} {usage}")
        try:
            args = () if argument is None or raw is None else (argument.parse(raw),)
            return self._factories[name](*args)
        except ValueError as exc:
            raise ConfigError(f"cleaner spec {spec!r}: {exc}") from None
        except ConfigError as exc:  # the factory refused the value: say which spec it was
            raise ConfigError(f"cleaner spec {spec!r}: {exc}") from None


def default_cleaners() -> CleanerRegistry:
    """A fresh registry holding the built-in cleaners and filters."""
    plain: dict[str, Cleaner] = {
        "strip": strip,
        "strip_code_fences": strip_code_fences,
        "strip_chatter": strip_chatter,
        "strip_think": strip_think,
        "extract_code_block": extract_code_block,
        "extract_json": extract_json,
        "normalize_whitespace": normalize_whitespace,
        "reject_empty": reject_empty,
    }
    counted: dict[str, CleanerFactory] = {
        "truncate_chars": truncate_chars,
        "truncate_sentences": truncate_sentences,
        "truncate_tokens": truncate_tokens,
        "reject_longer": reject_longer,
    }
    matching: dict[str, CleanerFactory] = {
        "drop_lines": drop_lines,
        "reject_if": reject_if,
        "reject_unless": reject_unless,
    }
    registry = CleanerRegistry({name: _constant(cleaner) for name, cleaner in plain.items()})
    for name, factory in counted.items():
        registry.register(name, factory, INTEGER_ARGUMENT)
    for name, factory in matching.items():
        registry.register(name, factory, REGEX_ARGUMENT)
    return registry


def build_chain(specs: Sequence[str], registry: CleanerRegistry | None = None) -> CleanerChain:
    """Build a chain from specs, using the built-in cleaners unless a registry is given."""
    return (registry or default_cleaners()).build_chain(specs)


def _constant(cleaner: Cleaner) -> CleanerFactory:
    """The factory of a cleaner that takes no argument."""
    return lambda: cleaner


def _check_arity(name: str, factory: CleanerFactory, argument: Argument | None) -> None:
    """Fail at registration if the factory cannot take the argument its name declares."""
    try:
        inspect.signature(factory).bind(*(() if argument is None else (None,)))
    except TypeError:
        takes = "no argument" if argument is None else f"one argument ({argument.what})"
        raise ConfigError(f"cleaner {name!r}: its factory must take {takes}") from None
    except ValueError:  # no introspectable signature (some builtins): trust the declaration
        pass


def _import_cleaner(spec: str, reference: str) -> Cleaner:
    """Import ``module:function`` (the attribute may be dotted) and check it is callable."""
    target = import_reference(reference, f"cleaner {spec!r}")
    if not callable(target):
        raise ConfigError(f"cleaner {spec!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[return-value]
