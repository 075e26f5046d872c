"""How configuration names what it builds: the one spec grammar, and the registry reading it.

Cleaners, validators and rewards are named by specs of one grammar:

- ``"name"``: a registered name, built by its factory with the factory's defaults.
- ``"name:ARG"``: a name that declares one :class:`Argument`; ARG is the rest of the string after
  the first colon, exactly (colons and spaces included): ``"truncate_chars:500"``,
  ``"drop_lines:^Note: .*"``. It is short for the table that sets the argument's parameter.
- ``{name = "name", **parameters}``: a TOML table (inline, or ``[[validators]]``) whose other
  keys are the factory's parameters: ``{ name = "truncate_chars", limit = 500 }``,
  ``{ name = "length", max_words = 150 }``.
- ``"package.module:attribute"``: user code to import (the attribute may be dotted), as a string
  or as a table's ``name``. It is the cleaner, validator or reward itself: no parameters.

``"name:ARG"`` and ``"package.module:attribute"`` are told apart by what comes before the first
colon: a registered name makes the spec that name with an argument (names are identifiers, so a
dotted module path is never one); otherwise a string shaped ``dotted.name:dotted.name``
(:func:`is_reference`) is imported; anything else is an unknown name. A registered name wins over
a top-level module spelled the same way. Every registry reports a typo, a misspelt parameter, a
bad argument or an unimportable module in the same words, before the first model call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from postprocess.references import import_reference, is_reference
from refine.errors import ConfigError

__all__ = [
    "Argument",
    "FactoryRegistry",
    "ParsedSpec",
    "check_params",
    "spec_label",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class Argument:
    """The one argument a name takes as ``"name:ARG"``: what to call it in errors, an example.

    ``parse`` reads ARG's text, or the value a table gives the argument's parameter (a TOML
    integer, string, ...), and raises ``ValueError`` with a sentence saying what is wrong.
    """

    what: str
    example: str
    parse: Callable[[Any], object]


@dataclass(frozen=True)
class ParsedSpec:
    """A spec as a registry read it: a registered name or a reference, and the parameters.

    ``written`` is how errors quote the spec: the string as written, or the table's name.
    """

    name: str
    params: dict[str, Any]
    written: str
    reference: bool = False


class FactoryRegistry(Generic[_F]):
    """Names mapped to factories, resolving specs of the one grammar.

    Subclasses set ``kind`` ("validator") for messages, the ``contract`` a user function keeps
    and ``call_example`` arguments its signature must accept, and ``wraps_factory_errors``
    (False where factories name themselves in their errors). Each run builds its own registry
    from the defaults, so registrations never leak between runs.
    """

    kind = "factory"
    contract = "(draft, row)"
    call_example: tuple[object, ...] = ("", {})
    wraps_factory_errors = True

    def __init__(
        self,
        factories: Mapping[str, _F] | None = None,
        arguments: Mapping[str, Argument] | None = None,
    ) -> None:
        """``arguments`` declares the argument of each name that takes one as ``"name:ARG"``."""
        self._factories: dict[str, _F] = {}
        self._arguments: dict[str, tuple[str, Argument]] = {}
        for name, factory in (factories or {}).items():
            self.register(name, factory, (arguments or {}).get(name))

    def register(self, name: str, factory: _F, argument: Argument | None = None) -> None:
        """Add or replace a factory; the name must be an identifier so specs parse one way.

        With ``argument``, ``"name:ARG"`` sets the factory's first parameter to the parsed ARG,
        so the factory must take one (its other parameters need defaults).
        """
        if not name.isidentifier():
            raise ConfigError(f"{self.kind} names must be identifiers, got {name!r}")
        self._arguments.pop(name, None)
        if argument is not None:
            parameter = _sole_required(factory)
            if parameter is None:
                raise ConfigError(
                    f"{self.kind} {name!r}: its factory must take one argument ({argument.what})"
                )
            self._arguments[name] = (parameter, argument)
        self._factories[name] = factory

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def copy(self) -> Self:
        """An independent registry with the same entries."""
        arguments = {name: argument for name, (_, argument) in self._arguments.items()}
        return type(self)(self._factories, arguments)

    def unknown(self, name: str) -> ConfigError:
        """The error for a name that is neither registered nor an import."""
        return ConfigError(
            f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}; "
            f"a user {self.kind} is named as 'package.module:function'"
        )

    def parse(self, spec: object) -> ParsedSpec:
        """Read a spec of the grammar above; an unknown name fails listing the known ones."""
        if isinstance(spec, str):
            head, colon, rest = spec.partition(":")
            name = head.strip()
            if name in self._factories:
                shorthand = {self._argument_of(name, spec): rest} if colon else {}
                return ParsedSpec(name, shorthand, spec)
            reference = f"{name}:{rest.strip()}"
            if colon and is_reference(reference):
                return ParsedSpec(reference, {}, spec, reference=True)
            raise self.unknown(name)
        if not isinstance(spec, Mapping):
            raise ConfigError(f"a {self.kind} is a name or a table with a 'name' key, got {spec!r}")
        params: dict[Any, Any] = dict(spec)
        name, kind = params.pop("name", None), self.kind
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a {kind} table needs a 'name' key naming the {kind}, got {spec!r}")
        name = name.strip()
        if not all(isinstance(key, str) for key in params):
            raise ConfigError(f"{kind} {name!r}: parameter names must be strings, got {spec!r}")
        if name in self._factories or is_reference(name):
            return ParsedSpec(name, params, name, reference=name not in self._factories)
        raise self.unknown(name)

    def build_spec(self, spec: object, **injected: Any) -> tuple[ParsedSpec, Callable[..., Any]]:
        """The spec read, and what it names: the factory's product, or the imported function.

        ``injected`` are values the registry supplies to factories that declare them (a spec
        may not set them), e.g. the configuration's folder.
        """
        parsed = self.parse(spec)
        if parsed.reference:
            return parsed, self._import_user(parsed)
        return parsed, self._call_factory(parsed, injected)

    def _argument_of(self, name: str, spec: str) -> str:
        """The parameter ``"name:ARG"`` sets; a name without a declared argument takes none."""
        if name in self._arguments:
            return self._arguments[name][0]
        table = f'; its parameters go in a table: {{ name = "{name}", ... }}'
        hint = table if _parameters(self._factories[name]) else ""
        raise ConfigError(f"{self.kind} {spec!r}: {name} takes no argument{hint}")

    def _call_factory(self, parsed: ParsedSpec, injected: Mapping[str, Any]) -> Callable[..., Any]:
        name, params = parsed.name, dict(parsed.params)
        what = f"{self.kind} {parsed.written!r}"
        factory = self._factories[name]
        parameter, argument = self._arguments.get(name, ("", None))
        if argument is not None and not params and _required(factory, parameter):
            raise ConfigError(
                f"{what} needs {argument.what} argument ('{name}:{argument.example}', "
                f"or {parameter} in a table)"
            )
        check_params(what, params, factory, injected=list(injected))
        if argument is not None and parameter in params:
            try:
                params[parameter] = argument.parse(params[parameter])
            except ValueError as exc:
                raise ConfigError(f"{what}: {exc}") from None
        taken = _parameters(factory)
        params.update({key: value for key, value in injected.items() if key in taken})
        try:
            built = factory(**params)
        except ConfigError as exc:
            if not self.wraps_factory_errors:
                raise
            raise ConfigError(f"{what}: {exc}") from exc
        if not callable(built):
            kind = type(built).__name__
            raise ConfigError(f"{what}: its factory returned {kind}, not a {self.kind}")
        return built  # type: ignore[no-any-return]

    def _import_user(self, parsed: ParsedSpec) -> Callable[..., Any]:
        what = f"{self.kind} {parsed.name!r}"
        if parsed.params:
            raise ConfigError(
                f"{what} is a user {self.kind} and takes no parameters, got "
                f"{', '.join(sorted(parsed.params))}; register a factory to configure one"
            )
        target = import_reference(parsed.name, what)
        if not callable(target):
            raise ConfigError(f"{what} is a {type(target).__name__}, not a function")
        try:
            inspect.signature(target).bind(*self.call_example)
        except TypeError:
            signature = inspect.signature(target)
            message = f"{what} must take {self.contract}, but its signature is {signature}"
            raise ConfigError(message) from None
        except ValueError:  # no introspectable signature (some builtins): trust it
            pass
        return target  # type: ignore[no-any-return]


def spec_label(name: str, params: Mapping[str, Any]) -> str:
    """A name with its parameters, e.g. ``chrf(word_order=2)``; the bare name without any."""
    if not params:
        return name
    shown = ", ".join(f"{key}={value!r}" for key, value in sorted(params.items()))
    return f"{name}({shown})"


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


def _parameters(factory: Callable[..., Any]) -> set[str]:
    """The names a factory takes by keyword (none known without an introspectable signature)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in parameters if p.kind in _NAMED}


def _required(factory: Callable[..., Any], parameter: str) -> bool:
    """Whether the factory's ``parameter`` has no default."""
    found = inspect.signature(factory).parameters.get(parameter)
    return found is not None and found.default is found.empty


def _sole_required(factory: Callable[..., Any]) -> str | None:
    """The factory's first parameter if it can be set by keyword and no other one is required."""
    try:
        first, *rest = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no parameters, or no introspectable signature
        return None
    required = [p for p in rest if p.kind in _NAMED and p.default is p.empty]
    return first.name if first.kind in _NAMED and not required else None


def _listed(label: str, names: list[str]) -> str:
    if not names:
        return ""
    return f"{label}{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
