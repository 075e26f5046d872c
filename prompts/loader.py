"""Find, render and inspect prompt templates.

Templates live in one folder per task kind (``summarize/initial.j2``). User folders come first on
the search path and the packaged folder last, so a user file overrides the packaged one of the same
name and every other name falls back. Rendering is sandboxed (``SandboxedEnvironment``), strict
about undefined names (``StrictUndefined``) and capped in output size, because templates are
configuration and a typo or a runaway loop must fail clearly, not send garbage or eat memory.

Values: ``{{ value }}`` of an object or a list renders as JSON text (``{"a": 1}``, ``["x", "y"]``,
non-ASCII kept), not as Python's ``{'a': 1}``; ``true``/``false`` for booleans and nothing for
None, in the same spirit (see :func:`prompts.values.show_value`). A template file must be UTF-8,
and what a render produces must be valid Unicode: either failure is a TemplateError naming the
file.

Whitespace: ``trim_blocks`` and ``lstrip_blocks`` are on (as in Hugging Face chat templates), so a
``{% tag %}`` on its own line leaves no blank line behind. The variables every template receives
are documented in :mod:`prompts.variables`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import cast

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from prompts.capped import CappedSandbox
from prompts.template_files import Utf8Loader, template_error
from prompts.values import show_value
from refine.errors import ConfigError, TemplateError
from refine.jsonl import unpaired_surrogate

__all__ = [
    "PACKAGED_TEMPLATES",
    "LOOP_ROLES",
    "ROLES",
    "TemplateEnvironment",
    "TemplateInfo",
    "build_environment",
]

PACKAGED_TEMPLATES: Path = Path(__file__).resolve().parent
"""The folder of the packaged templates: ``<task>/<role>.j2`` under the ``prompts`` package."""

ROLES: tuple[str, ...] = ("system", "initial", "refine")
"""The role templates of the plain refinement steps, which every task folder holds."""

LOOP_ROLES: tuple[str, ...] = ("fix", "critique", "judge")
"""The refinement loop's role templates, which every packaged task folder holds too: ``fix``
(a step after a draft with problems), ``critique`` (Self-Refine feedback) and ``judge`` (the
LLM judge reward). Only ``fix`` follows the task's system prompt; the other two are requests of
their own, a single user message."""

_WITH_SYSTEM = frozenset({"initial", "refine", "fix"})
COMPUTED_INCLUDE = "*"
"""Stands, among the names a template reads, for an include whose name is computed at render
time (what it reads cannot be known); never a variable's name."""


@dataclass(frozen=True)
class TemplateInfo:
    """One template on the search path, and whether a user folder overrides the packaged one."""

    name: str
    task: str
    role: str
    path: Path
    packaged: bool


class TemplateEnvironment:
    """A sandboxed Jinja environment over user folders and the packaged templates.

    Built by :func:`build_environment`; each instance holds its own Jinja environment, so
    nothing is shared between runs.
    """

    def __init__(self, user_dirs: Sequence[Path], max_output_chars: int) -> None:
        self.user_dirs: tuple[Path, ...] = tuple(user_dirs)
        self.max_output_chars = max_output_chars
        self._loaders = [
            Utf8Loader([str(d) for d in self.user_dirs]),
            Utf8Loader(str(PACKAGED_TEMPLATES)),
        ]
        self.jinja: SandboxedEnvironment = CappedSandbox(
            max_output_chars,
            loader=jinja2.ChoiceLoader(self._loaders),
            undefined=jinja2.StrictUndefined,
            finalize=show_value,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            # A run's templates are fixed once it starts: without this, every render of every
            # request stats each template file (and each include) to see if it changed.
            auto_reload=False,
        )
        # Templates that read no name at all (most system prompts): rendered once, since each
        # render gives the same text. None: it reads some name, so it is rendered every time.
        self._constant: dict[str, str | None] = {}

    @property
    def packaged_dir(self) -> Path:
        """The packaged templates' folder, last on the search path."""
        return PACKAGED_TEMPLATES

    def render(self, name: str, variables: Mapping[str, object]) -> str:
        """Render one template; stop as soon as its output passes ``max_output_chars``.

        Rendering streams through ``generate()`` so a runaway loop is stopped early instead of
        building the whole string first. Every failure becomes a :class:`TemplateError` that
        names the template file and line; so does output that is not valid Unicode (a ``\\ud83d``
        escape in the template), which no request could carry.

        A template that reads no variable and no global (nor does any template it includes) is
        rendered once and its text reused: it cannot come out differently.
        """
        if (text := self._constant.get(name)) is not None:
            return text
        constant = name not in self._constant and not self._names_read([name])
        text = self._render(name, variables)
        self._constant[name] = text if constant else None
        return text

    def _render(self, name: str, variables: Mapping[str, object]) -> str:
        """Render ``name`` afresh: see :meth:`render`."""
        template = self._get(name)
        pieces: list[str] = []
        size = 0
        stream = cast(Generator[str, None, None], template.generate(dict(variables)))
        try:
            for piece in stream:
                size += len(piece)
                if size > self.max_output_chars:
                    raise TemplateError(
                        f"template {name} ({template.filename}) rendered more than "
                        f"{self.max_output_chars} characters; check its loops or raise the cap"
                    )
                pieces.append(piece)
        except TemplateError:
            raise
        except Exception as exc:  # anything a template does wrong is a template error
            raise template_error(name, exc) from exc
        finally:
            stream.close()
        text = "".join(pieces)
        if why := unpaired_surrogate(text):
            raise TemplateError(f"template {name} ({template.filename}) rendered text that {why}")
        return text

    def render_messages(
        self,
        task: str,
        step: int,
        variables: Mapping[str, object],
        role: str | None = None,
        demos: Sequence[Mapping[str, str]] = (),
    ) -> list[dict[str, str]]:
        """The chat messages of one request: system, the few-shot ``demos``, then ``initial`` at
        step 1 or ``refine`` after, unless ``role`` names the user template (``fix``,
        ``critique``, ``judge``).

        ``demos`` are earlier chat turns (``{"role": "user"|"assistant", "content": ...}``, see
        :meth:`render_demos`): they follow the system message of ``initial``, ``refine`` and
        ``fix`` requests, so the stable text (system, demos, then the input inside the user
        message) leads every step's prompt. ``critique`` and ``judge`` are requests of their
        own and get neither. Each content is stripped; a role that renders to nothing (an empty
        override) is left out.
        """
        if step < 1:
            raise ValueError(f"steps count from 1, got {step}")
        user_role = role or ("initial" if step == 1 else "refine")
        messages: list[dict[str, str]] = []
        if user_role in _WITH_SYSTEM:
            system = self.render(f"{task}/system.j2", variables).strip()
            if system:
                messages.append({"role": "system", "content": system})
            messages.extend(dict(turn) for turn in demos)
        content = self.render(f"{task}/{user_role}.j2", variables).strip()
        if content:
            messages.append({"role": "user", "content": content})
        return messages

    def render_demos(
        self, task: str, demos: Sequence[tuple[Mapping[str, object], str]]
    ) -> list[dict[str, str]]:
        """Few-shot demos as earlier chat turns: for each ``(variables, output)``, the task's
        ``initial`` message rendered from the demo's variables (a step-1 request for that
        input) as a user turn, then ``output`` as the assistant's answer.

        A chat model given a demo pasted inside one user message tends to copy the demo's answer
        instead of doing the task (seen with Qwen2.5-Coder-0.5B and Gemma 3 on summaries); as
        turns, the demos read as what they are: earlier requests already answered.
        """
        turns: list[dict[str, str]] = []
        for variables, output in demos:
            turns.append(
                {"role": "user", "content": self.render(f"{task}/initial.j2", variables).strip()}
            )
            turns.append({"role": "assistant", "content": output.strip()})
        return turns

    def variables_used(self, task: str, roles: Sequence[str] = ROLES) -> set[str]:
        """The variables the task's role templates read, following include/extends/import.

        A name an including template sets itself (a loop variable, a ``set``) is not reported
        for the templates it includes. Includes whose name is computed at render time cannot be
        followed and are skipped.
        """
        used = self._names_read([f"{task}/{role}.j2" for role in roles])
        return used - set(self.jinja.globals) - {COMPUTED_INCLUDE}

    def _names_read(self, names: Sequence[str]) -> set[str]:
        """The names the templates ``names`` read and do not set, globals (``range``, ...)
        included, following include/extends/import (see :meth:`variables_used`); a computed
        include counts as :data:`COMPUTED_INCLUDE`, since what it reads cannot be known."""
        used: set[str] = set()
        seen: set[str] = set()
        pending = [(name, frozenset[str]()) for name in names]
        while pending:
            name, outer = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            text, path = self.source(name)
            try:
                tree = self.jinja.parse(text, name, str(path))
            except jinja2.TemplateSyntaxError as exc:
                raise template_error(name, exc) from exc
            used |= meta.find_undeclared_variables(tree) - outer
            inner = outer | _declared_names(tree)
            children = list(meta.find_referenced_templates(tree))
            if None in children:
                used.add(COMPUTED_INCLUDE)
            pending.extend((child, inner) for child in children if child)
        return used

    def source(self, name: str) -> tuple[str, Path]:
        """The text of a template and the file it comes from (a user override or the package)."""
        try:
            text, filename, _ = self.jinja.loader.get_source(self.jinja, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise TemplateError(self._not_found(name)) from None
        return text, Path(filename or name)

    def list_templates(self) -> list[TemplateInfo]:
        """Every ``.j2`` template on the search path, each resolved to the file that wins."""
        names: set[str] = set()
        for loader in self._loaders:
            names.update(n for n in loader.list_templates() if n.endswith(".j2"))
        infos = []
        for name in sorted(names):
            path = self.source(name)[1]
            pure = PurePosixPath(name)
            task = "" if str(pure.parent) == "." else str(pure.parent)
            packaged = not any(path.is_relative_to(d) for d in self.user_dirs)
            infos.append(TemplateInfo(name, task, pure.stem, path, packaged))
        return infos

    def _get(self, name: str) -> jinja2.Template:
        try:
            return self.jinja.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(self._not_found(name)) from None
        except TemplateError:
            raise
        except Exception as exc:
            raise template_error(name, exc) from exc

    def _not_found(self, name: str) -> str:
        folders = [*self.user_dirs, PACKAGED_TEMPLATES]
        return f"template {name} not found in {', '.join(map(str, folders))}"


def build_environment(
    user_dirs: Sequence[Path] = (), *, max_output_chars: int = 100_000
) -> TemplateEnvironment:
    """A fresh template environment: ``user_dirs`` first (in order), packaged templates last."""
    if max_output_chars < 1:
        raise ConfigError(f"max_output_chars must be positive, got {max_output_chars}")
    resolved = []
    for folder in user_dirs:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise TemplateError(f"template folder {folder} does not exist or is not a folder")
        resolved.append(path)
    return TemplateEnvironment(resolved, max_output_chars)


def _declared_names(tree: nodes.Template) -> frozenset[str]:
    """Names a template binds itself: assignments, loop targets, macros and imports."""
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names.update(m.name for m in tree.find_all(nodes.Macro))
    names.update(i.target for i in tree.find_all(nodes.Import))
    for imp in tree.find_all(nodes.FromImport):
        names.update(n if isinstance(n, str) else n[1] for n in imp.names)
    return frozenset(names)
