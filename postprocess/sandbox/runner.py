"""The script that runs inside the sandbox: load the candidate code, then each test statement.

The code's own checks (top-level ``assert`` and expression statements, the body of
``if __name__ == "__main__":``) are split off: the rest loads first, the tests run against it,
then each own check runs apart, so a wrong self-test neither hides the tests nor reads as a load
failure. Every message-less ``assert`` (the code's, the tests', inside helpers like ``check``)
is rewritten so its failure shows the values compared and what each call returned; every error
names the innermost line of the code or tests it came from, quoted; object addresses and
temporary names are scrubbed, so identical runs give identical text.

The host runs this file's text as ``python -s -P -B -u -c <text> REPORT_FD`` with the base
interpreter and ``PYTHONHASHSEED=0``, so it imports nothing but the standard library and never
this package. The host sends the code, the test statements and a random nonce on stdin, as
JSON. Each result goes to REPORT_FD as one line that starts with the nonce, so what the code
prints cannot pass for a result, and results survive a kill halfway. The line reads::

    NONCE KIND INDEX LIMIT ERROR

KIND is ``start`` (the sandbox is up and the code has not run yet), ``load`` (the code failed to
load), ``item`` (statement INDEX ran), ``check`` (own check INDEX starts; ERROR is the JSON
``[line, source]``), ``own`` (it ended: ``[line, source, error or null]``) or ``done``. LIMIT
names the :class:`SandboxLimits` field an error points to (``-`` for none), ERROR is otherwise a
JSON string or ``null`` for a pass.

The code runs in this same process, so code written to game the score can still reach the
runner (frames, ``gc``) and fake results: the nonce stops forged output, not a determined attack.
"""

from __future__ import annotations

import ast
import copy
import errno
import json
import os
import re
import sys
import traceback
import types
from collections.abc import Callable
from contextlib import suppress
from typing import Any

__all__ = ["main"]

_ERROR_CHARS = 800  # an error long enough to show an assertion's values, short enough to quote
_REPR_CHARS = 200  # each side of a failed comparison
_CODE_FILE = "solution.py"
_TESTS_FILE = "tests.py"

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{4,}\b")
_TEMP_NAME = re.compile(r"(/tmp/tmp)[A-Za-z0-9_]{8}")
_SELF_TESTS = "__refine_notes__"  # the global the rewritten asserts call; never mangled
_NOTES = "__refine_v__"
_SHOWN_CALLS = 3
_NESTED = (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)
_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip


def _scrub(text: str) -> str:
    """Drop what differs between identical runs: object addresses and temporary names."""
    return _TEMP_NAME.sub("\\1\u2026", _ADDRESS.sub("0x\u2026", text))


def _short(value: object) -> str:
    """A repr that cannot raise and stays short, for assertion messages."""
    try:
        text = _scrub(repr(value))
    except BaseException:  # the code's own __repr__ may raise anything
        text = f"<{type(value).__name__} whose repr failed>"
    return text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."


class _Assert:
    """What a rewritten ``assert`` needs to explain itself: its parts' keys and source."""

    def __init__(self) -> None:
        self.kind = "value"  # "compare", "not" or "value"
        self.keys: list[int] = []  # compare operands, or the one value shown
        self.ops: list[str] = []
        self.calls: list[tuple[int, str]] = []  # (key, source) of each call, in source order


_ASSERTS: list[_Assert] = []


class _Notes:
    """One evaluation of a rewritten ``assert``: the values of its parts as they were computed."""

    __slots__ = ("index", "values")

    def __init__(self, index: int) -> None:
        self.index = index
        self.values: dict[int, Any] = {}

    def note(self, key: int, value: Any) -> Any:
        self.values[key] = value
        return value

    def explain(self) -> str:
        spec, values = _ASSERTS[self.index], self.values
        head = "assert False"
        if spec.kind == "compare":
            seen = [k for k in spec.keys if k in values]
            if len(seen) >= 2:  # a chain stops at the comparison that failed
                left, right = values[seen[-2]], values[seen[-1]]
                head = f"assert {_short(left)} {spec.ops[len(seen) - 2]} {_short(right)}"
        elif spec.keys and spec.keys[0] in values:
            negation = "not " if spec.kind == "not" else ""
            head = f"assert {negation}{_short(values[spec.keys[0]])}"
        shown = [(text, _short(values[k])) for k, text in spec.calls if k in values]
        calls = [f"{text} returned {value}" for text, value in shown if value != text]
        return head + (", where " + ", ".join(calls[:_SHOWN_CALLS]) if calls else "")


class _Rewriter(ast.NodeTransformer):
    """Rewrites each message-less ``assert`` so a failure names the values its parts had."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _text(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.source, node) or ast.unparse(node)
        return " ".join(text.split())

    def _note(self, spec: _Assert, node: ast.expr, key: int | None = None) -> ast.Call:
        if key is None:
            key = id(node)  # unique within this assert: all its nodes are alive together
        call = ast.Call(
            func=ast.Attribute(ast.Name(_NOTES, ast.Load()), "note", ast.Load()),
            args=[ast.Constant(key), node],
            keywords=[],
        )
        return ast.copy_location(call, node)

    def _wrap_calls(self, spec: _Assert, node: ast.expr) -> ast.expr:
        if isinstance(node, _NESTED):
            return node  # values per iteration would mislead; the outer call shows the result
        for field, value in ast.iter_fields(node):
            if isinstance(value, ast.expr):
                setattr(node, field, self._wrap_calls(spec, value))
            elif isinstance(value, list):
                value[:] = [self._wrap_calls(spec, v) if isinstance(v, ast.expr) else v
                            for v in value]  # fmt: skip
        if isinstance(node, ast.Call):
            wrapped = self._note(spec, node)
            spec.calls.append((wrapped.args[0].value, self._text(node)))  # type: ignore[attr-defined]
            return wrapped
        return node

    def visit_Assert(self, node: ast.Assert) -> Any:
        if node.msg is not None:
            return self.generic_visit(node)
        spec = _Assert()
        test = node.test
        positions = {}
        for sub in ast.walk(test):
            if isinstance(sub, ast.Call):
                positions[id(sub)] = (sub.lineno, sub.col_offset)
        if isinstance(test, ast.Compare) and all(type(op) in _OPS for op in test.ops):
            spec.kind = "compare"
            spec.ops = [_OPS[type(op)] for op in test.ops]
            operands = [self._wrap_calls(spec, e) for e in [test.left, *test.comparators]]
            noted = [o if _is_note(o) else self._note(spec, o) for o in operands]
            spec.keys = [o.args[0].value for o in noted]  # type: ignore[attr-defined]
            test.left, test.comparators = noted[0], list(noted[1:])
            checked: ast.expr = test
        elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            spec.kind = "not"
            inner = self._wrap_calls(spec, test.operand)
            inner = inner if _is_note(inner) else self._note(spec, inner)
            spec.keys = [inner.args[0].value]  # type: ignore[attr-defined]
            test.operand = inner
            checked = test
        else:
            inner = self._wrap_calls(spec, test)
            inner = inner if _is_note(inner) else self._note(spec, inner)
            spec.keys = [inner.args[0].value]  # type: ignore[attr-defined]
            checked = inner
        spec.calls.sort(key=lambda call: positions.get(call[0], (0, 0)))
        index = len(_ASSERTS)
        _ASSERTS.append(spec)
        start = ast.Assign(
            targets=[ast.Name(_NOTES, ast.Store())],
            value=ast.Call(ast.Name(_SELF_TESTS, ast.Load()), [ast.Constant(index)], []),
        )
        explain = ast.Call(
            ast.Attribute(ast.Name(_NOTES, ast.Load()), "explain", ast.Load()), [], []
        )
        fail = ast.Raise(ast.Call(ast.Name("AssertionError", ast.Load()), [explain], []), None)
        check = ast.If(ast.UnaryOp(ast.Not(), checked), [fail], [])
        return [ast.copy_location(start, node), ast.copy_location(check, node)]


def _is_note(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == _NOTES
    )


def _compile(
    body: list[ast.stmt], source: str, filename: str, first_line: int = 1
) -> types.CodeType:
    """``body`` with its asserts rewritten, compiled; as written where rewriting fails.

    ``source`` is the text the nodes' positions refer to; they move down to ``first_line``.
    """
    plain = ast.Module(body=copy.deepcopy(body), type_ignores=[])
    ast.increment_lineno(plain, first_line - 1)
    code = compile(plain, filename, "exec")  # raises the code's own SyntaxError first
    try:
        rewritten = _Rewriter(source).visit(ast.Module(body=copy.deepcopy(body), type_ignores=[]))
        ast.increment_lineno(ast.fix_missing_locations(rewritten), first_line - 1)
        return compile(rewritten, filename, "exec")
    except Exception:  # a construct the rewriter does not know: plain asserts still work
        return code


class _Sources:
    """The lines of the code and of the tests, to quote the line an error points to."""

    def __init__(self, code: str, items: list[list[Any]]) -> None:
        self.lines: dict[str, dict[int, str]] = {
            _CODE_FILE: dict(enumerate(code.splitlines(), 1)),
            _TESTS_FILE: {},
        }
        for first, source in items:
            for offset, text in enumerate(str(source).splitlines()):
                self.lines[_TESTS_FILE][int(first) + offset] = text

    def where(self, exc: BaseException, skip: tuple[str, int] | None) -> str:
        """`` (at solution.py line N: `source`)`` for the innermost frame of ours, or ``""``."""
        try:
            frames = traceback.extract_tb(exc.__traceback__)
        except BaseException:  # a broken traceback must not lose the result
            return ""
        for frame in reversed(frames):
            if frame.filename in self.lines and frame.lineno is not None:
                if (frame.filename, frame.lineno) == skip:
                    return ""
                text = " ".join(self.lines[frame.filename].get(frame.lineno, "").split())
                label = _CODE_FILE if frame.filename == _CODE_FILE else "tests"
                return f" (at {label} line {frame.lineno}: `{text}`)" if text else ""
        return ""


def _limit_of(exc: BaseException) -> str:
    """Which limit an exception points to: the runner sees these, the host sees only the exit."""
    if isinstance(exc, MemoryError):
        return "memory_bytes"
    if isinstance(exc, OSError):
        # fork() and thread creation fail with EAGAIN once RLIMIT_NPROC is reached
        if exc.errno == errno.EAGAIN:
            return "max_processes"
        if exc.errno == errno.EFBIG:
            return "max_file_bytes"
        if exc.errno == errno.ENOSPC:
            return "scratch_bytes"
    return "-"


def _describe(exc: BaseException, sources: _Sources, skip: tuple[str, int] | None = None) -> str:
    """``Type: message (at solution.py line N: `source`)``, scrubbed and trimmed; never raises."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except BaseException:  # the code's own __str__ may raise anything
        message = ""
    if isinstance(exc, SyntaxError):
        label = _CODE_FILE if exc.filename == _CODE_FILE else "tests"
        text = f"{name}: {exc.msg} at {label} line {exc.lineno}"
        if exc.text and exc.text.strip():
            text += f": `{' '.join(exc.text.split())}`"
    else:
        text = f"{name}: {message}" if message else name
        text += sources.where(exc, skip)
    text = _scrub(text)
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def _own_checks(tree: ast.Module) -> tuple[list[list[ast.stmt] | ast.stmt], list[ast.stmt]]:
    """Split the code into steps to load and the ``if __name__ == "__main__":`` checks.

    A step is a list of statements that load together, or one of the code's own checks (a
    top-level ``assert`` or expression statement like ``print(f(2))``), which runs in place but
    fails alone. The main block's statements run after the tests, like an import would skip them.
    """
    steps: list[list[ast.stmt] | ast.stmt] = []
    main: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Assert) or (
            isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant)
        ):
            steps.append(node)
        elif isinstance(node, ast.If) and _is_main_guard(node.test):
            main.extend(node.body)
            steps.append(list(node.orelse))
        elif steps and isinstance(steps[-1], list):
            steps[-1].append(node)
        else:
            steps.append([node])
    return steps, main


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _statement(source: str, line: int) -> types.CodeType:
    tree = ast.parse(source, _TESTS_FILE)
    return _compile(tree.body, source, _TESTS_FILE, line)


def main() -> None:
    """Read the job from stdin, run it, write one report line per step; always ``_exit``."""
    # Bound before the code runs, so the code rebinding os.write or json does not change reports.
    write, getpid, exit_now = os.write, os.getpid, os._exit
    escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
    report_fd = int(sys.argv[1])
    job = json.loads(sys.stdin.buffer.read())
    nonce: str = job.pop("nonce")
    main_pid = getpid()
    code: str = job["code"]
    sources = _Sources(code, job["items"])

    def send(kind: str, index: int, limit: str, payload: str) -> None:
        if getpid() != main_pid:
            exit_now(0)  # a child the code forked: it never reports, it ends here
        # If the code closed the report fd, its missing results count as failures.
        with suppress(OSError):
            write(report_fd, f"{nonce} {kind} {index} {limit} {payload}\n".encode("ascii"))

    def report(kind: str, index: int, exc: BaseException | None, skip: Any = None) -> None:
        if exc is None:
            send(kind, index, "-", "null")
        else:
            send(kind, index, _limit_of(exc), escape(_describe(exc, sources, skip)))

    report("start", 0, None)
    module = types.ModuleType("solution")
    sys.modules["solution"] = module  # so dataclasses and `from solution import f` work
    namespace = module.__dict__
    namespace[_SELF_TESTS] = _Notes
    own = _OwnChecks(code, namespace, send, sources)
    main: list[ast.stmt] = []
    try:
        tree = ast.parse(code, _CODE_FILE)
        compile(tree, _CODE_FILE, "exec")  # errors only the compiler finds, before anything runs
        steps, main = _own_checks(tree)
        for step in steps:
            if isinstance(step, list):
                exec(_compile(step, code, _CODE_FILE), namespace)
            else:
                own.run([step])
    except BaseException as exc:  # SystemExit and all: a crash fails every test
        report("load", 0, exc)
        exit_now(0)
    report("load", 0, None)
    for index, (line, source) in enumerate(job["items"]):
        try:
            exec(_statement(source, line), namespace)
        except BaseException as exc:  # each statement fails alone
            report("item", index, exc, (_TESTS_FILE, line))
        else:
            report("item", index, None)
    own.run(main)
    report("done", 0, None)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        exit_now(0)  # skip the code's atexit hooks and never wait on its threads


class _OwnChecks:
    """Runs the code's own checks, each apart; a block stops at its first failure but an assert.

    Each sends ``check`` (with ``[line, source]``) before it runs and ``own`` (with ``[line,
    source, error]``) after, so one a limit stops is still named.
    """

    def __init__(
        self,
        code: str,
        namespace: dict[str, Any],
        send: Callable[[str, int, str, str], None],
        sources: _Sources,
    ) -> None:
        self.code, self.namespace, self.send, self.sources = code, namespace, send, sources
        self.index = 0

    def run(self, block: list[ast.stmt]) -> None:
        for node in block:
            index = self.index
            self.index += 1
            source = ast.get_source_segment(self.code, node) or ast.unparse(node)
            where = [node.lineno, _scrub(source)]
            self.send("check", index, "-", json.dumps(where))
            try:
                exec(_compile([node], self.code, _CODE_FILE), self.namespace)
            except SystemExit as exc:  # unittest.main() and sys.exit(0) end a passing check
                error = None if exc.code in (None, 0, False) else _describe(exc, self.sources)
                self.send("own", index, "-", json.dumps([*where, error]))
                break
            except BaseException as exc:  # the code's own check fails alone
                error = _describe(exc, self.sources, (_CODE_FILE, node.lineno))
                self.send("own", index, _limit_of(exc), json.dumps([*where, error]))
                if not isinstance(node, ast.Assert):
                    break  # what follows in its block likely needs what this one made
            else:
                self.send("own", index, "-", json.dumps([*where, None]))


if __name__ == "__main__":
    main()
