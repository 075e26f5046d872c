"""``refine server``: a local Prefect server tuned to keep up with batch runs.

With its defaults a local Prefect server records about 30 task runs a second and drops events
once it falls 10,000 behind; larger recorder and persister batches and no automation triggers
cut its cost per task run to 8-11 ms (measured: see DESIGN.md). This command starts
``prefect server start`` with those settings on 127.0.0.1, prints the UI address, and stops
the server (and everything it started) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["BATCH_SERVER_SETTINGS", "server_cmd", "server_environment"]

BATCH_SERVER_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "100",
}
"""Settings that let a local server keep up with batch loads (see DESIGN.md)."""


def server_environment(
    base: dict[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 4200,
    automations: bool = False,
    database_url: str | None = None,
) -> dict[str, str]:
    """``base`` with the batch settings; automations (triggers) only when asked for.

    Settings already in ``base`` win, so a user can still override any of them. The API's
    host and port are set too: the UI calls the API at the address they make (unless
    PREFECT_UI_API_URL says otherwise), not at the default port 4200.
    """
    address = {"PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(port)}
    env = {**BATCH_SERVER_SETTINGS, **base, **address}
    if automations:
        env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] = "true"
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    env.pop("PREFECT_API_URL", None)  # the server is the API; it must not point elsewhere
    return env


def _wait_healthy(proc: subprocess.Popen[bytes], api_url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: the server's services too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _wait_until_stopped(proc: subprocess.Popen[bytes], stopping: list[int]) -> int:
    """Wait for the server; once asked to stop, give it 20 s before killing its group."""
    asked_at: float | None = None
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stopping and asked_at is None:
                asked_at = time.monotonic()
            if asked_at is not None and time.monotonic() - asked_at > 20:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def server_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and the UI.")] = 4200,
    automations: Annotated[
        bool, typer.Option("--automations", help="Keep Prefect's automation triggers on.")
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL, e.g. postgresql+asyncpg://user:pw@host/prefect "
            "(default: SQLite in PREFECT_HOME).",
            envvar="PREFECT_API_DATABASE_CONNECTION_URL",
            show_envvar=False,
        ),
    ] = None,
    startup_timeout: Annotated[float, typer.Option(help="Seconds to wait for it.")] = 120.0,
) -> None:
    """Run a Prefect server tuned for batch runs; watch runs in its UI. Ctrl-C stops it.

    `refine server stop` stops the server that `refine run` keeps warm between runs.
    """
    if ctx.invoked_subcommand is not None:  # `refine server stop`
        return
    env = server_environment(
        dict(os.environ), host=host, port=port, automations=automations, database_url=database_url
    )
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    api_url = f"http://{shown}:{port}/api"
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # only signal here: waiting inside a handler would fight the main thread's wait
        stopping.append(signum)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not _wait_healthy(proc, api_url, startup_timeout):
            if not stopping:
                _stop(proc)
                typer.echo(f"prefect server did not start within {startup_timeout:.0f} s", err=True)
                raise typer.Exit(1)
        else:
            triggers = "on" if automations else "off (--automations to keep them)"
            typer.echo(
                f"Prefect UI:  http://{shown}:{port}\n"
                f"API:         {api_url}\n"
                f"automations: {triggers}\n"
                f"Point runs at it:  export PREFECT_API_URL={api_url}\n"
                "Ctrl-C stops the server.",
            )
        code = _wait_until_stopped(proc, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(proc)
    if stopping:
        typer.echo("prefect server stopped")
        raise typer.Exit(0)
    raise typer.Exit(code or 0)
