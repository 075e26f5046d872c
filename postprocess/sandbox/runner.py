"""The script that runs inside the sandbox: load the candidate code, then each test statement.

The host runs this file's text as ``python -I -B -u -c <text> REPORT_FD`` with the base
interpreter, so it imports nothing but the standard library and never this package. The host
sends the code, the test statements and a random nonce on stdin, as JSON. Each result goes to
REPORT_FD as one line that starts with the nonce, so what the code prints cannot pass for a
result, and results survive a kill halfway. The line reads::

    NONCE KIND INDEX LIMIT ERROR

KIND is ``start`` (the sandbox is up and the code has not run yet), ``load`` (the code failed to
load), ``item`` (statement INDEX ran) or ``done``. LIMIT names the :class:`SandboxLimits` field an
error points to (``-`` for none), ERROR is a JSON string or ``null`` for a pass.

The code runs in this same process, so code written to game the score can still reach the
runner (frames, ``gc``) and fake results: the nonce stops forged output, not a determined attack.
"""

from __future__ import annotations

import ast
import errno
import json
import operator
import os
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

_Compare = Callable[[Any, Any], Any]
_OPS: dict[type[ast.cmpop], tuple[str, _Compare]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Is: ("is", operator.is_),
    ast.IsNot: ("is not", operator.is_not),
    ast.In: ("in", lambda left, right: left in right),
    ast.NotIn: ("not in", lambda left, right: left not in right),
}


def _short(value: object) -> str:
    """A repr that cannot raise and stays short, for assertion messages."""
    try:
        text = repr(value)
    except BaseException:  # the code's own __repr__ may raise anything
        text = f"<{type(value).__name__} whose repr failed>"
    return text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."


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


def _describe(exc: BaseException) -> str:
    """``Type: message (solution.py, line N)``, trimmed; never raises."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except BaseException:  # the code's own __str__ may raise anything
        message = ""
    text = f"{name}: {message}" if message else name
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == _CODE_FILE]
    except BaseException:  # a broken traceback must not lose the result
        frames = []
    if frames and not isinstance(exc, SyntaxError):
        text += f" ({_CODE_FILE}, line {frames[-1].lineno})"
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def _evaluate(node: ast.expr, namespace: dict[str, Any]) -> Any:
    expression = ast.fix_missing_locations(ast.Expression(body=node))
    return eval(compile(expression, _TESTS_FILE, "eval"), namespace)


def _check_assert(statement: ast.Assert, namespace: dict[str, Any]) -> None:
    """Run a bare ``assert`` so that a failure shows the values it compared, as pytest does."""
    test = statement.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _OPS:
        symbol, compare = _OPS[type(test.ops[0])]
        left = _evaluate(test.left, namespace)
        right = _evaluate(test.comparators[0], namespace)
        if not compare(left, right):
            raise AssertionError(f"assert {_short(left)} {symbol} {_short(right)}")
        return
    value = _evaluate(test, namespace)
    if not value:
        raise AssertionError(f"assert {_short(value)}")


def _run_statement(source: str, line: int, namespace: dict[str, Any]) -> None:
    tree = ast.parse(source, _TESTS_FILE)
    ast.increment_lineno(tree, line - 1)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert) and tree.body[0].msg is None:
        _check_assert(tree.body[0], namespace)
    else:
        exec(compile(tree, _TESTS_FILE, "exec"), namespace)


def main() -> None:
    """Read the job from stdin, run it, write one report line per step; always ``_exit``."""
    # Bound before the code runs, so the code rebinding os.write or json does not change reports.
    write, getpid, exit_now = os.write, os.getpid, os._exit
    escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
    report_fd = int(sys.argv[1])
    job = json.loads(sys.stdin.buffer.read())
    nonce: str = job.pop("nonce")
    main_pid = getpid()

    def report(kind: str, index: int, exc: BaseException | None) -> None:
        if getpid() != main_pid:
            exit_now(0)  # a child the code forked: it never reports, it ends here
        if exc is None:
            line = f"{nonce} {kind} {index} - null\n"
        else:
            line = f"{nonce} {kind} {index} {_limit_of(exc)} {escape(_describe(exc))}\n"
        # If the code closed the report fd, its missing results count as failures.
        with suppress(OSError):
            write(report_fd, line.encode("ascii"))

    report("start", 0, None)
    module = types.ModuleType("solution")
    sys.modules["solution"] = module  # so dataclasses and `from solution import f` work
    namespace = module.__dict__
    try:
        exec(compile(job["code"], _CODE_FILE, "exec"), namespace)
    except BaseException as exc:  # SystemExit and all: a crash fails every test
        report("load", 0, exc)
        exit_now(0)
    report("load", 0, None)
    for index, (line, source) in enumerate(job["items"]):
        try:
            _run_statement(source, line, namespace)
        except BaseException as exc:  # each statement fails alone
            report("item", index, exc)
        else:
            report("item", index, None)
    report("done", 0, None)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        exit_now(0)  # skip the code's atexit hooks and never wait on its threads


if __name__ == "__main__":
    main()
