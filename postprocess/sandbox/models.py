"""What a sandbox run takes and gives: limits, the split of the tests, and the result.

Kept apart from :mod:`postprocess.sandbox` so the command builder and the result assembly share
these types without importing the runner machinery.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from refine.errors import ConfigError, RefineError

__all__ = [
    "DEFAULT_LIMITS",
    "InvalidTests",
    "SandboxLimits",
    "SandboxResult",
    "TestOutcome",
    "TestStatement",
    "parse_tests",
]


class InvalidTests(RefineError):
    """A row's ``tests`` do not parse or hold no ``assert``: no pass rate can come from them."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits on one run; the defaults fit unit tests of small functions with room to spare.

    Attributes:
        cpu_seconds: CPU time (RLIMIT_CPU). Tests of small functions need milliseconds; 10 s
            allows slow but honest brute force and stops busy loops.
        memory_bytes: address space per process (RLIMIT_AS). The interpreter needs ~30 MB; 1 GiB
            fits real inputs and makes a 4 GB allocation fail with MemoryError.
        max_processes: processes and threads of the sandbox uid (RLIMIT_NPROC). A few workers
            fit; a fork bomb stops at 16, which also caps the memory worst case at 16 GiB.
        max_file_bytes: size of any one file written (RLIMIT_FSIZE).
        wall_seconds: elapsed time before the whole process group is killed; twice the CPU
            limit, so a sleeping or blocked run ends too.
        max_output_bytes: stdout and stderr kept (head and tail), enough for tracebacks and
            small enough to quote in a fix prompt.
        scratch_bytes: size of each writable tmpfs (/sandbox with /tmp in it, and /dev/shm).
    """

    cpu_seconds: int = 10
    memory_bytes: int = 1 << 30
    max_processes: int = 16
    max_file_bytes: int = 16 << 20
    wall_seconds: float = 20.0
    max_output_bytes: int = 64 << 10
    scratch_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"sandbox limit {name} must be a positive number, got {value!r}")


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True)
class TestStatement:
    """One top-level statement of a row's ``tests``; only ``assert`` statements are tests."""

    __test__ = False  # not a pytest class

    line: int
    source: str
    is_test: bool


@dataclass(frozen=True)
class TestOutcome:
    """How one statement went: ``error`` is None when it passed."""

    __test__ = False  # not a pytest class

    line: int
    source: str
    error: str | None

    @property
    def passed(self) -> bool:
        """Whether the statement ran without raising."""
        return self.error is None


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of running code and its tests; ``outcomes`` has one entry per ``assert``.

    Attributes:
        outcomes: every test in order, passed or with its error.
        setup_errors: non-test statements (imports, helpers) that raised.
        own_checks: the checks the code ran on itself (its top-level ``assert`` and expression
            statements, its ``if __name__ == "__main__":`` block), run after the tests; they are
            not tests and never count in the pass rate, but a failing one is a problem.
        ran: tests that reported a result (the rest never ran: crash, limit or timeout).
        output: the code's stdout and stderr together, head and tail kept within the limit.
        exit_status: the exit status: 128 + N when signal N ended the sandboxed code, -N when
            the host sent signal N (a timeout is -9), and -N for any signal in the weak mode.
        timed_out: the wall-clock limit ran out and the process group was killed.
        limit_hit: the :class:`SandboxLimits` field the run ran into, if any.
        error: why some tests have no result of their own (load crash, kill), if any.
        sandboxed: False only in the weak mode.
        seconds: elapsed time of the run.
    """

    outcomes: tuple[TestOutcome, ...]
    setup_errors: tuple[TestOutcome, ...]
    ran: int
    output: str
    exit_status: int
    timed_out: bool
    limit_hit: str | None
    error: str | None
    sandboxed: bool
    seconds: float
    own_checks: tuple[TestOutcome, ...] = ()

    @property
    def total(self) -> int:
        """Number of tests (``assert`` statements)."""
        return len(self.outcomes)

    @property
    def passed(self) -> int:
        """Number of tests that passed."""
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def failed(self) -> int:
        """Number of tests that failed or never ran."""
        return self.total - self.passed

    @property
    def pass_rate(self) -> float:
        """Passed tests over all tests, in [0, 1]."""
        return self.passed / self.total if self.total else 0.0

    @property
    def failures(self) -> tuple[TestOutcome, ...]:
        """The tests that failed, in order."""
        return tuple(outcome for outcome in self.outcomes if not outcome.passed)


def parse_tests(tests: str) -> tuple[TestStatement, ...]:
    """Split ``tests`` into top-level statements, so each ``assert`` can pass or fail alone.

    Raises:
        InvalidTests: the text does not parse, or holds no ``assert`` statement.
    """
    try:
        tree = ast.parse(tests, "tests")
    except SyntaxError as exc:
        raise InvalidTests(f"the tests do not parse: line {exc.lineno}: {exc.msg}") from exc
    except ValueError as exc:  # null bytes
        raise InvalidTests(f"the tests do not parse: {exc}") from exc
    lines = tests.splitlines()
    statements = []
    for node in tree.body:
        decorators = getattr(node, "decorator_list", [])
        first = min([node.lineno, *(d.lineno for d in decorators)])
        if first != node.lineno:  # the node's own position leaves its decorators out
            source = "\n".join(lines[first - 1 : node.end_lineno])
        else:
            source = ast.get_source_segment(tests, node) or ""
        statements.append(TestStatement(first, source, isinstance(node, ast.Assert)))
    if not any(statement.is_test for statement in statements):
        raise InvalidTests("the tests hold no assert statement, so no pass rate can be computed")
    return tuple(statements)
