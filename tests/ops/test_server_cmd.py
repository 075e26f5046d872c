"""``refine server``: a real ``prefect server start`` with the batch settings, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from flows.ops.server import BATCH_SERVER_SETTINGS, server_environment
from tests.cli_helpers import REFINE
from tests.prefect_server import _free_port


def test_environment_turns_automations_off_unless_asked() -> None:
    env = server_environment({"PREFECT_API_URL": "http://elsewhere/api", "HOME": "/h"})
    assert env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "200"
    assert "PREFECT_API_URL" not in env and env["HOME"] == "/h"
    on = server_environment({}, automations=True, database_url="postgresql+asyncpg://u@h/db")
    assert on["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "true"
    assert on["PREFECT_API_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://u@h/db"
    # what the user set wins
    mine = server_environment({"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500"})
    assert mine["PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE"] == "500"


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_refine_server_prints_the_ui_applies_the_settings_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [REFINE, "server", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        assert f"Prefect UI:  http://127.0.0.1:{port}" in text, text
        assert f"export PREFECT_API_URL=http://127.0.0.1:{port}/api" in text
        assert "automations: off" in text
        settings = _get(f"http://127.0.0.1:{port}/api/admin/settings")
        assert isinstance(settings, dict)
        services = settings["server"]["services"]
        assert services["triggers"]["enabled"] is False
        assert services["task_run_recorder"]["batch_size"] == int(
            BATCH_SERVER_SETTINGS["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"]
        )
        assert services["event_persister"]["read_batch_size"] == 100
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200  # the UI is served

        proc.send_signal(signal.SIGINT)  # Ctrl-C in a terminal
        assert proc.wait(timeout=30) == 0
        assert "prefect server stopped" in proc.stdout.read()
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
