"""Run generated code against its tests in a sandbox, never in the host process.

One call runs the code and every top-level statement of ``tests`` in one sandboxed Python process
(see :mod:`postprocess.sandbox.command` for what the sandbox is made of, and
:mod:`postprocess.sandbox.runner` for what runs inside). Each ``assert`` statement is one test
and is run on its own, so a failing test does not hide the next one and a pass rate exists; other
statements (imports, helpers) are setup, run in order. Code that crashes while loading fails
every test with that error.

What the sandbox does not protect against: the code can still fake its own results (it runs in
the runner's process); CPU and memory are limited per process, so the worst case is
``max_processes × memory_bytes``; the kernel is the boundary (no seccomp filter); as root, the
code may create user namespaces of its own. In the weak mode the code can read and write the
user's files and use the network.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from postprocess.sandbox.command import (
    SANDBOX_DIR,
    SandboxUnavailable,
    explain_start_failure,
    find_tools,
    sandbox_command,
    sandbox_env,
    spare_uid,
    weak_command,
)
from postprocess.sandbox.models import (
    DEFAULT_LIMITS,
    InvalidTests,
    SandboxLimits,
    SandboxResult,
    TestOutcome,
    TestStatement,
    parse_tests,
)
from postprocess.sandbox.process import Finished, run_process
from postprocess.sandbox.report import Report, parse_report

__all__ = [
    "DEFAULT_LIMITS",
    "InvalidTests",
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailable",
    "TestOutcome",
    "TestStatement",
    "check_sandbox",
    "parse_tests",
    "run_code_tests",
]

logger = logging.getLogger(__name__)

_MAX_REPORT_BYTES = 4 << 20  # a thousand tests with long errors fit; a flood from the code stops
_RUNNER_SOURCE = Path(__file__).with_name("runner.py")


def _interpreter(python: str | None) -> Path:
    """The base interpreter (not a venv's): the sandbox binds its prefix and nothing of the venv."""
    chosen = python or getattr(sys, "_base_executable", None) or sys.executable
    return Path(os.path.realpath(chosen))


@functools.cache
def _runner_source() -> str:
    return _RUNNER_SOURCE.read_text(encoding="utf-8")


def _job(code: str, statements: tuple[TestStatement, ...], nonce: str) -> bytes:
    items = [[statement.line, statement.source] for statement in statements]
    return json.dumps({"nonce": nonce, "code": code, "items": items}).encode()


def _out_of_time(limits: SandboxLimits) -> str:
    # One wording for the CPU limit, its hard kill and the wall clock: which of them fires first
    # depends on the machine's load, and the words are quoted to the model, so must not vary.
    return (
        f"ran out of time (limits: {limits.cpu_seconds} s of CPU, "
        f"{limits.wall_seconds:g} s of wall clock)"
    )


def _signal_limit(
    finished: Finished, limits: SandboxLimits, sandboxed: bool
) -> tuple[str | None, str | None]:
    """The limit and the words for an exit by signal: bwrap shows signal N as status 128 + N."""
    status = finished.exit_status
    number = -status if status < 0 else status - 128 if sandboxed and status > 128 else 0
    if number <= 0:
        return None, f"the process ended early with exit status {status}" if status else None
    name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
    if number in (signal.SIGXCPU, signal.SIGKILL):  # SIGKILL: the CPU hard limit
        return "cpu_seconds", _out_of_time(limits)
    return None, f"killed by signal {name}"


def _own_checks(report: Report, why: str | None) -> tuple[TestOutcome, ...]:
    stopped = f"did not finish: {why or 'the runner stopped'}"
    return tuple(
        TestOutcome(check.line, check.source, check.error if check.finished else stopped)
        for _, check in sorted(report.own.items())
    )


def _result(
    statements: tuple[TestStatement, ...],
    report: Report,
    finished: Finished,
    limits: SandboxLimits,
    sandboxed: bool,
) -> SandboxResult:
    limit, why = _signal_limit(finished, limits, sandboxed)
    if finished.timed_out:
        limit, why = "wall_seconds", _out_of_time(limits)
    if report.load_error is not None:
        why = f"the code failed to load: {report.load_error}"
    # What the runner saw (a MemoryError, a refused fork) is the cause; a later kill for time
    # is its consequence (freeing a huge heap takes CPU), so the runner's word wins.
    limit = report.limit or limit
    outcomes: list[TestOutcome] = []
    setup: list[TestOutcome] = []
    ran = 0
    missing_seen = False
    for index, statement in enumerate(statements):
        if index in report.items:
            error = report.items[index]
            ran += statement.is_test
        elif report.load_error is not None:
            error = why
        else:
            if why is None:
                why = "the runner stopped before this statement"
            if not report.loaded:
                error = f"not run: the code never finished loading: {why}"
            elif missing_seen:
                error = f"not run: {why}"
            else:
                error = f"stopped during this statement: {why}"
            missing_seen = True
        outcome = TestOutcome(statement.line, statement.source, error)
        if statement.is_test:
            outcomes.append(outcome)
        elif error is not None:
            setup.append(outcome)
    complete = report.done and report.load_error is None
    return SandboxResult(
        outcomes=tuple(outcomes),
        setup_errors=tuple(setup),
        ran=ran,
        output=finished.output,
        exit_status=finished.exit_status,
        timed_out=finished.timed_out,
        limit_hit=limit,
        error=None if complete else why,
        sandboxed=sandboxed,
        seconds=finished.seconds,
        own_checks=_own_checks(report, why),
    )


def run_code_tests(
    code: str,
    tests: str,
    limits: SandboxLimits = DEFAULT_LIMITS,
    *,
    allow_unsandboxed: bool = False,
    bwrap: str = "bwrap",
    python: str | None = None,
) -> SandboxResult:
    """Run ``code``, then each statement of ``tests``, in a sandbox; blocking (call from a thread).

    Args:
        allow_unsandboxed: where bubblewrap cannot run, run with limits only and log a warning.
        bwrap: the bubblewrap program (a name on PATH or a path).
        python: the interpreter to run inside; defaults to the base of the running one.

    Raises:
        InvalidTests: ``tests`` cannot give a pass rate.
        SandboxUnavailable: no sandbox here and ``allow_unsandboxed`` is False.
    """
    statements = parse_tests(tests)
    as_root = os.geteuid() == 0
    interpreter = _interpreter(python)
    nonce = secrets.token_hex(16)
    # Not -I: it implies -E, which would drop PYTHONHASHSEED; the environment is ours alone anyway.
    inner = [str(interpreter), "-s", "-P", "-B", "-u", "-c", _runner_source()]
    job = _job(code, statements, nonce)
    try:
        tools = find_tools(bwrap, as_root=as_root)
        uid = spare_uid() if as_root else None
        argv = sandbox_command(tools, limits, interpreter, inner, uid=uid)
        finished = _run(argv, job, limits, cwd=None, home=SANDBOX_DIR)
        report = parse_report(finished.report, nonce)
        if not report.started and not finished.timed_out:
            raise SandboxUnavailable(explain_start_failure(finished.output, finished.exit_status))
        return _result(statements, report, finished, limits, sandboxed=True)
    except SandboxUnavailable as exc:
        if not allow_unsandboxed:
            raise
        reason = str(exc)
    return _run_weak(statements, job, nonce, inner, limits, bwrap, as_root, reason)


def _run(
    argv: list[str], job: bytes, limits: SandboxLimits, cwd: str | None, home: str
) -> Finished:
    return run_process(
        argv,
        env=sandbox_env(home),
        cwd=cwd,
        stdin_data=job,
        wall_seconds=limits.wall_seconds,
        max_output_bytes=limits.max_output_bytes,
        max_report_bytes=_MAX_REPORT_BYTES,
    )


def _run_weak(
    statements: tuple[TestStatement, ...],
    job: bytes,
    nonce: str,
    inner: list[str],
    limits: SandboxLimits,
    bwrap: str,
    as_root: bool,
    reason: str,
) -> SandboxResult:
    """The opted-in weak mode: prlimit, a cleared environment and a process group, nothing more."""
    logger.warning(
        "RUNNING GENERATED CODE WITHOUT A SANDBOX (allow_unsandboxed): it can read and write "
        "this user's files and use the network%s. Why there is no sandbox: %s",
        "; as root, the process limit does not apply" if as_root else "",
        reason,
    )
    tools = find_tools(bwrap, as_root=False, need_bwrap=False)
    workdir = tempfile.mkdtemp(prefix="refine-weak-sandbox-")
    try:
        finished = _run(weak_command(tools, limits, inner), job, limits, workdir, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = parse_report(finished.report, nonce)
    if not report.started and not finished.timed_out:
        raise SandboxUnavailable(f"python did not start even unsandboxed: {finished.output}")
    return _result(statements, report, finished, limits, sandboxed=False)


def check_sandbox(*, bwrap: str = "bwrap", python: str | None = None) -> None:
    """Run one trivial test in the sandbox, so a machine without one fails at configuration time.

    Raises:
        SandboxUnavailable: with bubblewrap's reason and the fix.
    """
    probe = "import os\n\ndef uid():\n    return os.getuid()\n"
    result = run_code_tests(
        probe, "assert uid() != 0", SandboxLimits(wall_seconds=30.0), bwrap=bwrap, python=python
    )
    if result.passed != 1:
        raise SandboxUnavailable(
            "the sandbox started but a trivial test failed there: "
            f"{result.error or result.failures[0].error}\n{result.output}"
        )
