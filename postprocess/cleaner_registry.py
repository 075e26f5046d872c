"""Name cleaners in configuration: the cleaner registry, its argument kinds, and chains.

Cleaners are named by the specs every registry reads (see :mod:`postprocess.specs`): a name
(``"strip"``), a name with its argument after the first colon (``"truncate_chars:2000"``,
``"drop_lines:^Note: .*"``: the rest of the spec exactly, colons and spaces included), a table
setting the factory's parameter by its name (``{ name = "truncate_chars", limit = 2000 }``,
``{ name = "drop_lines", pattern = "^Note: .*" }``), or ``"package.module:function"`` naming a
user cleaner to import; a registered name wins over an import. Each name declares the kind of
argument it takes (:data:`INTEGER_ARGUMENT`, :data:`REGEX_ARGUMENT` or none), so a bad one fails
when the chain is built, naming the spec.

:class:`CleanerRegistry` is a :class:`~postprocess.specs.FactoryRegistry` like the validator and
reward registries, so names, copies and unknown-name errors work and read the same in all three.
The registry is an object built fresh by :func:`default_cleaners` for each run, never a mutated
module global, so one run's registrations cannot leak into another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from postprocess.chain import CleanerChain
from postprocess.chatter_cleaners import (
    drop_lines,
    extract_json,
    strip_chatter,
    strip_think,
    truncate_sentences,
    truncate_tokens,
)
from postprocess.cleaners import (
    Cleaner,
    extract_code_block,
    normalize_whitespace,
    strip,
    strip_code_fences,
    truncate_chars,
)
from postprocess.filters import reject_empty, reject_if, reject_longer, reject_unless
from postprocess.specs import Argument, FactoryRegistry, spec_label
from refine.errors import ConfigError

__all__ = [
    "INTEGER_ARGUMENT",
    "REGEX_ARGUMENT",
    "CleanerFactory",
    "CleanerRegistry",
    "CleanerSpec",
    "build_chain",
    "default_cleaners",
]

CleanerFactory = Callable[..., Cleaner]
"""Builds a cleaner from a spec's parameters, as keywords: none (``"strip"``) or the argument
(``"name:2000"`` or ``{ name = "name", limit = 2000 }``)."""

CleanerSpec = str | Mapping[str, Any]
"""A cleaner as configured: ``"name"``, ``"name:ARG"``, ``"package.module:function"`` or a table."""

_INTEGER = re.compile(r"[+-]?\d+")


def _parse_integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not _INTEGER.fullmatch(value.strip()):
        raise ValueError(f"the argument must be an integer, got {value!r}")
    return int(value)


def _parse_regex(text: object) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise ValueError(f"the pattern must be a string, got {text!r}")
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
    contract = "(text)"
    call_example: tuple[object, ...] = ("",)

    def resolve(self, spec: CleanerSpec) -> Cleaner:
        """The cleaner a spec names; unknown names fail with the list of known ones."""
        _, cleaner = self.build_spec(spec)
        return cleaner  # type: ignore[no-any-return]

    def build_chain(self, specs: Sequence[CleanerSpec]) -> CleanerChain:
        """Resolve every spec up front, so a typo fails before the first model call.

        The chain names each cleaner by its spec as written (a table by ``name(parameters)``).
        """
        if isinstance(specs, str | Mapping):
            raise ConfigError(f"cleaners must be a list of specs, got {specs!r}")
        cleaners, labels = [], []
        for spec in specs:
            parsed, cleaner = self.build_spec(spec)
            cleaners.append(cleaner)
            labels.append(spec if isinstance(spec, str) else spec_label(parsed.name, parsed.params))
        return CleanerChain(tuple(labels), tuple(cleaners))


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


def build_chain(
    specs: Sequence[CleanerSpec], registry: CleanerRegistry | None = None
) -> CleanerChain:
    """Build a chain from specs, using the built-in cleaners unless a registry is given."""
    return (registry or default_cleaners()).build_chain(specs)


def _constant(cleaner: Cleaner) -> CleanerFactory:
    """The factory of a cleaner that takes no argument."""
    return lambda: cleaner
