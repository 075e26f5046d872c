"""The tree drawn in refine/errors.py's docstring is the real one: every RefineError subclass of
the four packages appears under its own parent, with the module it lives in."""

from __future__ import annotations

import importlib
import pkgutil
import re

import refine.errors
from refine.errors import RefineError

PACKAGES = ("flows", "prompts", "postprocess", "refine")
_ENTRY = re.compile(r"(?:├──|└──) (\w+)")


def _import_everything() -> None:
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not info.name.endswith(".__main__"):  # a script: importing it runs the CLI
                importlib.import_module(info.name)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        if sub.__module__.split(".")[0] in PACKAGES:
            found += [sub, *_subclasses(sub)]
    return found


def _drawing() -> dict[str, tuple[str, str]]:
    """Each class the docstring draws: its parent in the drawing, and the text of its entry."""
    doc = refine.errors.__doc__ or ""
    lines = doc[doc.index("    RefineError\n") :].split("\n\n")[0].splitlines()[1:]
    drawn: dict[str, tuple[str, str]] = {}
    parents = ["RefineError"]  # parents[d] is the latest class drawn at depth d
    name = ""
    for line in lines:
        entry = _ENTRY.search(line)
        if entry is None:  # the continuation of the entry above
            drawn[name] = (drawn[name][0], drawn[name][1] + line)
            continue
        name, depth = entry.group(1), entry.start() // 4 - 1  # the drawing is indented by 4
        del parents[depth + 1 :]
        drawn[name] = (parents[depth], line)
        parents.append(name)
    return drawn


def test_every_refine_error_is_drawn_under_its_parent_with_its_module() -> None:
    _import_everything()
    drawn = _drawing()
    missing, misplaced = [], []
    for cls in _subclasses(RefineError):
        if cls.__name__ not in drawn:
            missing.append(f"{cls.__name__} ({cls.__module__})")
            continue
        parent, text = drawn[cls.__name__]
        if parent != cls.__base__.__name__:
            misplaced.append(f"{cls.__name__} is drawn under {parent}, not {cls.__base__.__name__}")
        if cls.__module__ != "refine.errors" and f"({cls.__module__})" not in text:
            misplaced.append(f"{cls.__name__}'s entry does not name ({cls.__module__})")
    assert not missing, f"add these to the tree in refine/errors.py's docstring: {missing}"
    assert not misplaced, misplaced


def test_the_drawing_names_no_class_that_does_not_exist() -> None:
    _import_everything()
    real = {cls.__name__ for cls in _subclasses(RefineError)}
    assert set(_drawing()) - real == set()
