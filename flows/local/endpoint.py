"""``refine run`` with no endpoint: start the local model for the run, stop it afterwards.

The model runs as a child ``refine serve-model`` process in its own session, so a Ctrl-C at
the terminal reaches only ``refine run``, which then stops the model itself; if ``refine run``
is killed outright, the child notices its parent's death and exits (``--parent-pid``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flows.config.run import RunConfig
from flows.local.model import check_local_extra, model_alias, resolve_model_path
from flows.local.server import LocalModelError, log_tail
from prompts import get_task_kind
from refine.errors import ConfigError

__all__ = ["endpoint_for_run", "start_local_model"]

_STOP_WAIT_S = 15.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server stops its slots), then SIGKILL the whole session if it lingers."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_STOP_WAIT_S)
    # the slots share the server's session: take them too, whatever state they are in
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def start_local_model(config: RunConfig, model_path: Path) -> Iterator[str]:
    """Serve ``model_path`` as configured on a free loopback port; yield its base URL."""
    local = config.local_model
    with tempfile.TemporaryDirectory(prefix="refine-local-model-") as folder:
        ready, log_path = Path(folder) / "url", Path(folder) / "server.log"
        command = [
            sys.executable, "-m", "flows.cli", "serve-model",
            "--port", "0",
            "--model-path", str(model_path),
            "--parallel", str(local.parallel),
            "--ctx-size", str(local.ctx_size),
            "--threads", str(local.threads_per_slot()),
            "--chat-format", local.chat_format,
            "--ready-file", str(ready),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if config.config_file is not None:  # carries settings the flags don't (weight_repack)
            command += ["--config", str(config.config_file)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        try:
            deadline = time.monotonic() + local.startup_timeout_s + 10  # + the server's own
            while not ready.exists():
                if process.poll() is not None:
                    raise LocalModelError(
                        f"the local model server exited with status {process.returncode} "
                        f"before answering:\n{log_tail(log_path, 20)}"
                    )
                if time.monotonic() > deadline:
                    raise LocalModelError(
                        f"the local model server did not start within "
                        f"{local.startup_timeout_s:g} s:\n{log_tail(log_path, 20)}"
                    )
                time.sleep(0.1)
            yield ready.read_text().strip()
        finally:
            _stop(process)


@contextmanager
def endpoint_for_run(config: RunConfig) -> Iterator[RunConfig]:
    """The run's config, pointing at the local model when no endpoint is configured.

    With an endpoint configured nothing is started. Otherwise the local model serves the
    run: the model name is its file name, answers are capped at ``[local_model]
    max_tokens`` and requests in flight at two per slot unless the run sets its own (more would
    only wait in the server's queue, against their deadline), and no API key is sent to it.
    """
    if config.endpoint.base_url:
        config.endpoint.require_target()
        yield config
        return
    if config.endpoint.model:  # answers cached under another model's name would mislead
        raise ConfigError(
            f"model {config.endpoint.model!r} is set but no endpoint is: pass --base-url "
            "(or set OPENAI_BASE_URL), or unset the model to run the local one"
        )
    check_local_extra()
    path = resolve_model_path(config.local_model.model_path)
    with start_local_model(config, path) as url:
        endpoint = config.endpoint
        updates: dict[str, Any] = {
            "base_url": url,
            "model": model_alias(path),
            "send_api_key": False,
        }
        if "max_tokens" not in endpoint.model_fields_set:
            updates["max_tokens"] = config.local_model.max_tokens
        if "stop" not in endpoint.model_fields_set:
            output = get_task_kind(config.task).output
            updates["stop"] = config.local_model.stop_for(output)
        run_updates: dict[str, Any] = {"endpoint": endpoint.model_copy(update=updates)}
        if "concurrency" not in config.model_fields_set:  # a short queue per slot is enough
            run_updates["concurrency"] = 2 * config.local_model.parallel
        yield config.model_copy(update=run_updates)
