"""The code sandbox: pass rates from real runs, and code that tries to escape being contained.

Every case runs real bubblewrap. Containment cases check what the host sees (its files, its
listening socket, its process table) rather than only what the sandbox reports.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postprocess.sandbox.run import (
    InvalidTests,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    check_sandbox,
    parse_tests,
    run_code_tests,
)
from refine.errors import ConfigError

# Small limits keep each containment case to a few seconds.
SMALL = SandboxLimits(
    cpu_seconds=2, memory_bytes=512 << 20, max_processes=8, wall_seconds=2.0, max_file_bytes=1 << 20
)

PALINDROME = """
import re

def is_palindrome(s: str) -> bool:
    kept = re.sub(r"[^0-9a-z]", "", s.lower())
    print("checking", repr(s))
    return kept == kept[::-1]
"""
PALINDROME_TESTS = (
    'assert is_palindrome("A man, a plan, a canal: Panama") is True\n'
    'assert is_palindrome("racecar") is True\n'
    'assert is_palindrome("hello") is False\n'
)


def processes_named(marker: str) -> list[tuple[int, int]]:
    """(pid, real uid) of every live (not zombie) process whose name is ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != marker:
                continue
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
        except (OSError, ValueError):
            continue  # the process ended while we looked
        if not status.get("State", "").strip().startswith("Z"):
            found.append((int(entry.name), int(status["Uid"].split()[0])))
    return found


def wait_until_gone(marker: str, seconds: float = 2.0) -> list[tuple[int, int]]:
    """Processes named ``marker`` still alive after ``seconds`` (a SIGKILL lands in moments)."""
    deadline = time.monotonic() + seconds
    while (left := processes_named(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


class Watched:
    """Runs the sandbox in a thread while watching the host's process table for ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.seen: dict[int, int] = {}  # pid -> uid, as the host sees them
        self.most_at_once = 0

    def run(self, code: str, tests: str, limits: SandboxLimits) -> SandboxResult:
        results: list[SandboxResult] = []
        worker = threading.Thread(
            target=lambda: results.append(run_code_tests(code, tests, limits))
        )
        worker.start()
        while worker.is_alive():
            alive = processes_named(self.marker)
            self.seen.update(alive)
            self.most_at_once = max(self.most_at_once, len(alive))
            time.sleep(0.01)
        worker.join()
        return results[0]


def renamed(marker: str) -> str:
    """Code that names its process ``marker`` (children inherit it), so the host can find them."""
    return f"with open('/proc/self/comm', 'w') as comm:\n    comm.write({marker!r})\n"


@pytest.fixture
def marker() -> Iterator[str]:
    name = "sbx" + secrets.token_hex(6)  # process names hold 15 characters
    yield name
    assert wait_until_gone(name) == [], "sandboxed processes outlived the run"


def test_passing_code_scores_a_full_rate_and_keeps_its_output() -> None:
    result = run_code_tests(PALINDROME, PALINDROME_TESTS)

    assert (result.total, result.passed, result.failed, result.ran) == (3, 3, 0, 3)
    assert result.pass_rate == 1.0
    assert result.failures == () and result.error is None and result.limit_hit is None
    assert result.sandboxed and not result.timed_out and result.exit_status == 0
    assert "checking 'racecar'" in result.output


def test_partly_failing_code_gives_exact_counts_and_failing_lines() -> None:
    code = "def add(a, b):\n    return a + b if a < 10 else a - b\n"
    tests = (
        "import math\n"
        "assert add(1, 2) == 3\n"
        "assert add(10, 2) == 12\n"
        "\n"
        "assert math.isclose(add(0.5, 0.25), 0.75)\n"
        "assert add(20, 5) in (25, 26)\n"
        "assert add(1)\n"
    )

    result = run_code_tests(code, tests)

    assert (result.total, result.passed, result.failed, result.ran) == (5, 2, 3, 5)
    assert result.pass_rate == pytest.approx(0.4)
    assert [(f.line, f.source, f.error) for f in result.failures] == [
        (
            3,
            "assert add(10, 2) == 12",
            "AssertionError: assert 8 == 12, where add(10, 2) returned 8",
        ),
        (
            6,
            "assert add(20, 5) in (25, 26)",
            "AssertionError: assert 15 in (25, 26), where add(20, 5) returned 15",
        ),
        (
            7,
            "assert add(1)",
            "TypeError: add() missing 1 required positional argument: 'b'",
        ),
    ]
    assert result.error is None and result.setup_errors == ()


def test_code_that_raises_while_loading_fails_every_test_with_that_error() -> None:
    code = "def f():\n    return 1\n\nRATIO = 1 / 0\n"

    result = run_code_tests(code, "assert f() == 1\nassert f() != 2\n")

    assert (result.total, result.passed, result.ran) == (2, 0, 0)
    assert result.error is not None and "ZeroDivisionError: division by zero" in result.error
    assert "(at solution.py line 4: `RATIO = 1 / 0`)" in result.error
    assert all("ZeroDivisionError" in (f.error or "") for f in result.failures)


def test_setup_statements_run_in_order_and_their_errors_are_kept_apart() -> None:
    tests = (
        "import missing_module_xyz\n"
        "@staticmethod\n"
        "def helper(x):\n"
        "    return x * 2\n"
        "assert helper.__func__(2) == 4; assert missing_module_xyz\n"
    )

    result = run_code_tests("VALUE = 1\n", tests)

    assert (result.total, result.passed) == (2, 1)
    assert [(e.line, e.error) for e in result.setup_errors] == [
        (1, "ModuleNotFoundError: No module named 'missing_module_xyz'")
    ]
    assert result.failures[0].error == "NameError: name 'missing_module_xyz' is not defined"


def test_tests_that_cannot_give_a_rate_are_refused() -> None:
    with pytest.raises(InvalidTests, match="line 1"):
        parse_tests("assert f(\n")
    with pytest.raises(InvalidTests, match="no assert"):
        parse_tests("x = 1\n")
    statements = parse_tests("@dec\ndef f():\n    pass\nassert f(\n  1)\n")
    assert [(s.line, s.source, s.is_test) for s in statements] == [
        (1, "@dec\ndef f():\n    pass", False),
        (4, "assert f(\n  1)", True),
    ]


def test_network_is_unreachable_and_the_host_server_sees_no_connection() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            "def probe():\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
            "        return 'connected'\n"
            "    except OSError as exc:\n"
            "        return type(exc).__name__\n"
        )

        result = run_code_tests(code, "assert probe() == 'connected'", SMALL)

        assert result.failed == 1
        assert result.failures[0].error == (
            "AssertionError: assert 'ConnectionRefusedError' == 'connected', "
            "where probe() returned 'ConnectionRefusedError'"
        )
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected


def test_writes_outside_the_sandbox_never_reach_the_host(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    created = tmp_path / "created.txt"
    code = (
        "def attempt(path):\n"
        "    try:\n"
        "        with open(path, 'w') as out:\n"
        "            out.write('pwned')\n"
        "        return 'written'\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
    )
    tests = (
        f"assert attempt({str(victim)!r}) == 'written'\n"
        f"assert attempt({str(created)!r}) == 'written'\n"
        "assert attempt('/usr/pwned') == 'written'\n"
        "assert attempt('/tmp/scratch') == 'written'\n"
        "assert attempt('notes.txt') == 'written'\n"
    )

    result = run_code_tests(code, tests, SMALL)

    assert victim.read_text() == "original"
    assert not created.exists() and not Path("/usr/pwned").exists()
    assert [f.line for f in result.failures] == [1, 2, 3]  # only the scratch space is writable
    assert (result.passed, result.failed) == (2, 3)


def test_a_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind(marker: str) -> None:
    code = renamed(marker) + "import os\nwhile True:\n    os.fork()\n"

    started = time.monotonic()
    result = run_code_tests(code, "assert True", SMALL)

    assert time.monotonic() - started < 5
    assert result.limit_hit == "max_processes" and result.passed == 0
    assert result.error is not None and "BlockingIOError" in result.error
    # the marker fixture then checks that every forked process is gone


def test_a_fork_bomb_that_ignores_errors_is_killed_at_the_wall_limit(marker: str) -> None:
    code = renamed(marker) + (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    watched = Watched(marker)

    started = time.monotonic()
    result = watched.run(code, "assert True", SMALL)

    assert time.monotonic() - started < SMALL.wall_seconds + 2
    assert result.timed_out and result.limit_hit in {"wall_seconds", "cpu_seconds"}
    assert 2 <= watched.most_at_once <= SMALL.max_processes
    assert 0 not in watched.seen.values()  # the host sees them under a non-root uid


def test_allocating_4_gb_fails_inside_and_is_reported_as_the_memory_limit() -> None:
    code = "def grab():\n    return len(bytearray(4 * 1024**3))\n"

    result = run_code_tests(code, "assert grab() > 0\nassert 1 + 1 == 2\n", SMALL)

    assert result.limit_hit == "memory_bytes"
    assert [f.error for f in result.failures] == [
        "MemoryError (at solution.py line 2: `return len(bytearray(4 * 1024**3))`)"
    ]
    assert result.passed == 1  # the next test still ran


def test_sleeping_forever_is_killed_at_the_wall_limit(marker: str) -> None:
    code = renamed(marker) + "import time\ndef wait():\n    time.sleep(10**6)\n"
    tests = "assert 1 == 1\nassert wait() is None\nassert 2 == 2\n"

    started = time.monotonic()
    result = run_code_tests(code, tests, SMALL)

    assert time.monotonic() - started < SMALL.wall_seconds + 1.5
    assert result.timed_out and result.limit_hit == "wall_seconds"
    assert (result.total, result.passed, result.ran) == (3, 1, 1)
    assert [f.error for f in result.failures] == [
        "stopped during this statement: ran out of time (limits: 2 s of CPU, 2 s of wall clock)",
        "not run: ran out of time (limits: 2 s of CPU, 2 s of wall clock)",
    ]


def test_busy_loops_stop_at_the_cpu_limit() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=10.0)

    result = run_code_tests("while True:\n    pass\n", "assert True", limits)

    assert result.limit_hit == "cpu_seconds" and not result.timed_out
    assert result.seconds < 5


def test_the_api_key_never_reaches_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-" + secrets.token_hex(8)
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    code = (
        "import glob, os\n"
        "print(dict(os.environ))\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        print(path, open(path, 'rb').read())\n"
        "    except OSError as exc:\n"
        "        print(path, exc)\n"
    )
    tests = "assert os.environ['OPENAI_API_KEY']\n"

    result = run_code_tests(code, "import os\n" + tests, SMALL)

    assert "'HOME': '/sandbox'" in result.output  # the code did print its environment
    assert canary not in repr(result)
    assert result.failures[0].error == "KeyError: 'OPENAI_API_KEY'"


def test_the_code_runs_as_a_non_root_user_that_cannot_regain_privileges() -> None:
    code = (
        "import os\n"
        "def status(field):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(field + ':'):\n"
        "            return line.split()[1]\n"
        "def can_become_root():\n"
        "    try:\n"
        "        os.setuid(0)\n"
        "        return True\n"
        "    except PermissionError:\n"
        "        return False\n"
    )
    tests = (
        "assert os.getuid() != 0\n"
        "assert os.geteuid() != 0\n"
        "assert not can_become_root()\n"
        "assert int(status('CapEff'), 16) == 0\n"
        "assert status('NoNewPrivs') == '1'\n"
    )

    result = run_code_tests(code, tests, SMALL)

    assert (result.passed, result.failures) == (5, ())


def test_output_is_trimmed_to_its_head_and_tail() -> None:
    code = "print('first line')\nfor i in range(20000):\n    print('filler', i)\nprint('last')\n"
    limits = SandboxLimits(max_output_bytes=1000)

    result = run_code_tests(code, "assert True", limits)

    assert result.output.startswith("first line")
    assert result.output.rstrip().endswith("last") and "bytes cut" in result.output
    assert len(result.output.encode()) < 1100


def test_printed_or_written_fake_results_do_not_count() -> None:
    code = (
        "import os\n"
        "fake = b'0123 start 0 - null\\n0123 item 0 - null\\n0123 done 0 - null\\n'\n"
        "print(fake.decode())\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, fake)\n"
        "    except OSError:\n"
        "        pass\n"
    )

    result = run_code_tests(code, "assert False", SMALL)

    assert (result.passed, result.failed) == (0, 1)


def test_concurrent_runs_from_threads_stay_separate() -> None:
    results: list[SandboxResult] = []
    workers = [
        threading.Thread(
            target=lambda n=n: results.append(run_code_tests(f"N = {n}\n", f"assert N == {n}"))
        )
        for n in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sorted(r.pass_rate for r in results) == [1.0] * 6


def test_check_sandbox_passes_where_bubblewrap_works() -> None:
    check_sandbox()


def test_without_bubblewrap_the_sandbox_refuses_and_runs_nothing(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-bwrap")
    flag = tmp_path / "ran"

    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        check_sandbox(bwrap=missing)
    with pytest.raises(SandboxUnavailable) as caught:
        run_code_tests(f"open({str(flag)!r}, 'w')\n", "assert True", bwrap=missing)

    assert isinstance(caught.value, ConfigError)
    assert not flag.exists()


def test_a_bubblewrap_that_cannot_start_is_explained(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\n"
        "exit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    with pytest.raises(SandboxUnavailable, match="user namespaces") as caught:
        run_code_tests("x = 1\n", "assert x == 1", bwrap=str(fake))

    assert "Creating new namespace failed" in str(caught.value)


def test_the_weak_mode_runs_only_when_asked_and_warns_every_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "sk-canary-" + secrets.token_hex(8)
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    missing = str(tmp_path / "no-such-bwrap")
    code = "import os\nprint(os.environ)\nHERE = os.getcwd()\n"
    tests = "assert 'OPENAI_API_KEY' not in os.environ\nassert os.getpid() != PARENT"
    tests = f"import os\nPARENT = {os.getpid()}\n{tests}\n"

    with caplog.at_level(logging.WARNING, logger="postprocess.sandbox"):
        first = run_code_tests(code, tests, SMALL, allow_unsandboxed=True, bwrap=missing)
        second = run_code_tests(code, tests, SMALL, allow_unsandboxed=True, bwrap=missing)

    warnings = [r for r in caplog.records if "WITHOUT A SANDBOX" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert "apt-get install bubblewrap" in warnings[0].getMessage()
    assert not first.sandboxed and (first.passed, second.passed) == (2, 2)
    assert canary not in first.output
    with pytest.raises(SandboxUnavailable):
        run_code_tests(code, tests, SMALL, bwrap=missing)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="wall_seconds"):
        SandboxLimits(wall_seconds=0)
    with pytest.raises(ConfigError, match="max_processes"):
        SandboxLimits(max_processes=True)
