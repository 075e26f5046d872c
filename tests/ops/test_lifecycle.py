"""The Prefect settings every CLI run uses: a temporary server may take long enough to start
on a first run, and a server that does not start is a clear error, not a traceback.

Where a test needs no temporary server, PREFECT_API_URL names one of the user's (never called),
so none is started."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from flows.ops.lifecycle import EPHEMERAL_STARTUP_S, offline_prefect
from refine.errors import ConfigError

_READ = (
    "from flows.ops.lifecycle import offline_prefect\n"
    "from prefect.settings import get_current_settings\n"
    "with offline_prefect():\n"
    "    print(get_current_settings().server.ephemeral.startup_timeout_seconds)\n"
)


_USERS_SERVER = "http://127.0.0.1:9/api"


def _timeout_in_a_fresh_process(**env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_EPHEMERAL")}
    out = subprocess.run(
        [sys.executable, "-c", _READ],
        env={**clean, "PREFECT_API_URL": _USERS_SERVER, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


def test_a_temporary_server_gets_time_for_a_first_start() -> None:
    assert EPHEMERAL_STARTUP_S > 20  # Prefect's own default, too short for a first start here
    assert _timeout_in_a_fresh_process() == EPHEMERAL_STARTUP_S


def test_the_users_own_startup_timeout_wins() -> None:
    setting = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    assert _timeout_in_a_fresh_process(**{setting: "33"}) == 33


def test_a_server_that_does_not_start_is_a_config_error_naming_the_ways_out() -> None:
    started: list[int] = []
    timeout = {"server.ephemeral.startup_timeout_seconds": 0}
    with temporary_settings(timeout), pytest.raises(ConfigError) as caught, offline_prefect():
        started.append(1)
    assert not started  # the run never began
    message = str(caught.value)
    assert "did not start within 0 s" in message and "refine server" in message
    assert "PREFECT_API_URL" in message and caught.value.exit_code == 2


def test_other_errors_pass_through_and_settings_are_restored() -> None:
    with temporary_settings({PREFECT_API_URL: _USERS_SERVER}):
        before = get_current_settings().server.ephemeral.startup_timeout_seconds
        with pytest.raises(RuntimeError, match="something else"), offline_prefect():
            raise RuntimeError("something else")
        assert get_current_settings().server.ephemeral.startup_timeout_seconds == before
