"""How configuration names things it builds: registries of factories, specs, user imports.

Validators (and anything else configured the same way) are named by specs: ``"name"``,
``{"name": "name", **parameters}`` as TOML tables give them, or ``"package.module:attribute"``
naming user code to import. This module holds the parts every such registry shares, so each one
reports a typo, a misspelt parameter or an unimportable module in the same words, before the
first model call.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from refine.errors import ConfigError

__all__ = [
    "Argument",
    "FactoryRegistry",
    "check_params",
    "import_reference",
    "is_reference",
    "split_spec",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class Argument:
    """The kind of argument a name takes: what to call it in errors, and how to read it.

    ``parse`` raises ``ValueError`` with a sentence saying what is wrong with the text.
    """

    what: str
    example: str
    parse: Callable[[str], object]


class FactoryRegistry(Generic[_F]):
    """Names mapped to factories; subclasses set ``kind`` ("validator") for their messages.

    A name may declare the one :class:`Argument` its factory takes. Each run builds its own
    registry from the defaults, so registrations never leak between runs.
    """

    kind = "factory"

    def __init__(
        self,
        factories: Mapping[str, _F] | None = None,
        arguments: Mapping[str, Argument] | None = None,
    ) -> None:
        """``arguments`` declares the argument of each name that takes one; others take none."""
        self._factories: dict[str, _F] = {}
        self._arguments: dict[str, Argument] = {}
        for name, factory in (factories or {}).items():
            self.register(name, factory, (arguments or {}).get(name))

    def register(self, name: str, factory: _F, argument: Argument | None = None) -> None:
        """Add or replace a factory; the name must be an identifier so specs parse one way."""
        if not name.isidentifier():
            raise ConfigError(f"{self.kind} names must be identifiers, got {name!r}")
        self._factories[name] = factory
        if argument is None:
            self._arguments.pop(name, None)
        else:
            self._arguments[name] = argument

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def copy(self) -> Self:
        """An independent registry with the same entries."""
        return type(self)(self._factories, self._arguments)

    def unknown(self, name: str) -> ConfigError:
        """The error for a name that is neither registered nor an import."""
        return ConfigError(
            f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}; "
            f"a user {self.kind} is named as 'package.module:function'"
        )


def split_spec(spec: object, kind: str) -> tuple[str, dict[str, Any]]:
    """A spec's name and parameters; a bare string has none."""
    if isinstance(spec, str):
        return spec.strip(), {}
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a {kind} table needs a 'name' key naming the {kind}, got {spec!r}")
        if not all(isinstance(key, str) for key in params):
            raise ConfigError(f"{kind} {name!r}: parameter names must be strings, got {spec!r}")
        return name.strip(), params
    raise ConfigError(f"a {kind} is a name or a table with a 'name' key, got {spec!r}")


def check_params(
    what: str,
    params: Mapping[str, Any],
    factory: Callable[..., Any],
    injected: Collection[str] = (),
) -> None:
    """Fail on parameters the factory does not take or needs and lacks, listing those it accepts.

    ``injected`` names parameters the registry supplies itself, which a spec may not set.
    A factory without an introspectable signature is not checked: its call decides.
    """
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return
    accepted = [p for p in parameters if p.kind in _NAMED and p.name not in injected]
    known = {p.name for p in accepted}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    unknown = [key for key in params if key in injected or (key not in known and not takes_any)]
    missing = [p.name for p in accepted if p.default is p.empty and p.name not in params]
    wrong = [_listed("unknown parameter", unknown), _listed("missing parameter", missing)]
    detail = "; ".join(text for text in wrong if text)
    if detail:
        options = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"{what}: {detail}; accepted parameters: {options}")


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


def _listed(label: str, names: list[str]) -> str:
    if not names:
        return ""
    return f"{label}{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
