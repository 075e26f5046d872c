"""What the sandbox tells the model: each failure names its line, its source and the values.

Every case runs real bubblewrap and asserts on the problem strings quoted in the next ``fix``
prompt, and that identical runs give identical strings (fix prompts are cached by content).
"""

from __future__ import annotations

from postprocess.sandbox import checks
from postprocess.sandbox.run import SandboxLimits, run_code_tests

SMALL = SandboxLimits(cpu_seconds=2, memory_bytes=512 << 20, max_processes=8, wall_seconds=4.0)


def problems(code: str, tests: str, limits: SandboxLimits = SMALL) -> list[str]:
    return checks.test_problems(run_code_tests(code, tests, limits))


def test_the_codes_own_checks_are_reported_apart_and_the_tests_still_run() -> None:
    code = (
        "def f(x):\n"
        "    return x + 2\n"
        "\n"
        "assert f(2) == 3\n"
        "print(f(1))\n"
        "if __name__ == '__main__':\n"
        "    assert f(0) == 2\n"
        "    assert f(1) == 4\n"
    )

    result = run_code_tests(code, "assert f(1) == 3\nassert f(2) == 5\n", SMALL)

    assert (result.total, result.passed, result.error) == (2, 1, None)
    assert [(c.line, c.source, c.passed) for c in result.own_checks] == [
        (4, "assert f(2) == 3", False),
        (5, "print(f(1))", True),
        (7, "assert f(0) == 2", True),
        (8, "assert f(1) == 4", False),
    ]
    assert checks.test_problems(result) == [
        "1 of 2 tests pass",
        "test failed (tests line 2): `assert f(2) == 5` -> "
        "AssertionError: assert 4 == 5, where f(2) returned 4",
        "your own check at solution.py line 4 failed: `assert f(2) == 3`: "
        "AssertionError: assert 4 == 3, where f(2) returned 4",
        "your own check at solution.py line 8 failed: `assert f(1) == 4`: "
        "AssertionError: assert 3 == 4, where f(1) returned 3",
        "output of the run: 3",
    ]


def test_own_checks_that_pass_leave_no_problem_and_never_count_as_tests() -> None:
    code = "def f(x):\n    return x * 2\n\nassert f(2) == 4\nif __name__ == '__main__':\n"
    code += "    import unittest\n    print(f(3))\n"

    result = run_code_tests(code, "assert f(1) == 2\n", SMALL)

    assert (result.total, result.passed, len(result.own_checks)) == (1, 1, 3)
    assert checks.test_problems(result) == []


def test_real_load_failures_quote_the_failing_line() -> None:
    assert problems("def f():\n    return 1\nVALUE = undefined_name + 1\n", "assert f() == 1") == [
        "0 of 1 tests pass",
        "the code failed to load: NameError: name 'undefined_name' is not defined "
        "(at solution.py line 3: `VALUE = undefined_name + 1`); none of the 1 tests passed",
    ]
    assert problems("def f(x:\n    return x\n", "assert f(1) == 1") == [
        "0 of 1 tests pass",
        "the code failed to load: SyntaxError: '(' was never closed at solution.py line 1: "
        "`def f(x:`; none of the 1 tests passed",
    ]


def test_every_common_assert_shape_shows_the_values() -> None:
    tests = (
        "import math\n"
        "assert is_even(3)\n"
        "assert not is_even(4)\n"
        "assert is_even(3) is True\n"
        "assert abs(half(3) - 1.0) < 1e-6\n"
        "assert math.isclose(half(3), 1.0)\n"
        "assert 0 < half(-4) < 10\n"
    )
    code = "def is_even(n):\n    return n % 2 == 0\n\ndef half(n):\n    return n / 2\n"

    assert problems(code, tests)[1:] == [
        "test failed (tests line 2): `assert is_even(3)` -> "
        "AssertionError: assert False, where is_even(3) returned False",
        "test failed (tests line 3): `assert not is_even(4)` -> "
        "AssertionError: assert not True, where is_even(4) returned True",
        "test failed (tests line 4): `assert is_even(3) is True` -> "
        "AssertionError: assert False is True, where is_even(3) returned False",
        "test failed (tests line 5): `assert abs(half(3) - 1.0) < 1e-6` -> "
        "AssertionError: assert 0.5 < 1e-06, where abs(half(3) - 1.0) returned 0.5, "
        "half(3) returned 1.5",
        "test failed (tests line 6): `assert math.isclose(half(3), 1.0)` -> "
        "AssertionError: assert False, where math.isclose(half(3), 1.0) returned False, "
        "half(3) returned 1.5",
        "... and 1 more failing tests",
    ]


def test_an_assert_inside_a_check_function_names_its_own_line_and_values() -> None:
    tests = (
        "def check(candidate):\n"
        "    assert candidate(1) == 2\n"
        "    assert candidate(2) == 4\n"
        "check(inc)\n"
        "assert inc(0) == 1\n"
    )

    assert problems("def inc(x):\n    return x + 1\n", tests) == [
        "1 of 1 tests pass",
        "test setup failed (tests line 4): `check(inc)` raised AssertionError: assert 3 == 4, "
        "where candidate(2) returned 3 (at tests line 3: `assert candidate(2) == 4`)",
    ]


def test_an_exception_in_the_code_names_the_line_it_was_raised_at() -> None:
    code = "def ratio(a, b):\n    total = a + b\n    return a / (total - a - b)\n"

    assert problems(code, "assert ratio(1, 2) == 0.5") == [
        "0 of 1 tests pass",
        "test failed (tests line 1): `assert ratio(1, 2) == 0.5` -> ZeroDivisionError: "
        "division by zero (at solution.py line 3: `return a / (total - a - b)`)",
    ]


def test_a_time_limit_names_the_test_and_reads_the_same_whichever_clock_ran_out() -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=3.0)
    busy = "def slow():\n    while True:\n        pass\n"
    asleep = "import time\ndef slow():\n    time.sleep(100)\n"
    tests = "assert slow() is None\nassert 1 == 1\n"

    on_cpu = run_code_tests(busy, tests, limits)
    on_wall = run_code_tests(asleep, tests, limits)

    assert (on_cpu.limit_hit, on_wall.limit_hit) == ("cpu_seconds", "wall_seconds")
    assert (
        checks.test_problems(on_cpu)
        == checks.test_problems(on_wall)
        == [
            "0 of 2 tests pass",
            "test failed (tests line 1): `assert slow() is None` -> stopped during this statement: "
            "ran out of time (limits: 1 s of CPU, 3 s of wall clock)",
            "test failed (tests line 2): `assert 1 == 1` -> not run: "
            "ran out of time (limits: 1 s of CPU, 3 s of wall clock)",
        ]
    )


def test_identical_runs_give_identical_problems() -> None:
    cases = {
        "set order": (
            "def words():\n    return {f'w{i}' for i in range(20)}\n",
            "assert words() == set()\n",
        ),
        "memory": (
            "def grab():\n    return len(bytearray(4 * 1024**3))\n",
            "assert grab() > 0\nassert 1 + 1 == 2\n",
        ),
        "address": (
            "class Box:\n    pass\n\ndef make():\n    return Box()\n",
            "assert make() is None\n",
        ),
    }
    for name, (code, tests) in cases.items():
        runs = [problems(code, tests) for _ in range(3)]
        assert runs[0] == runs[1] == runs[2], name
        assert "0x" not in "".join(runs[0]) or "0x\u2026" in "".join(runs[0]), name

    address = problems(*cases["address"])
    assert "<solution.Box object at 0x\u2026>" in address[1]
    assert problems(*cases["memory"])[1] == (
        "test failed (tests line 1): `assert grab() > 0` -> "
        "MemoryError (at solution.py line 2: `return len(bytearray(4 * 1024**3))`)"
    )
