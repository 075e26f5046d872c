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
from flows.local.catalogue import DEFAULT_MODEL, find_entry
from flows.local.model import ServedModel, check_local_extra, resolve_model
from flows.local.server import LocalModelError, log_tail
from prompts import get_task_kind
from refine.errors import ConfigError

__all__ = [
    "DEADLINE_MARGIN",
    "decode_tokens_per_s",
    "endpoint_for_run",
    "request_deadline_s",
    "start_local_model",
]

_STOP_WAIT_S = 15.0

DEADLINE_MARGIN = 1.5
"""How many times the measured time a local request may take before it counts as lost."""

PROMPT_SPEEDUP = 10.0
"""Prompt tokens are read about this many times faster than answer tokens are generated."""


def decode_tokens_per_s(served: ServedModel) -> float:
    """Answer tokens per second one slot generates: measured for the catalogue's models.

    For a model without a measured figure (another catalogue entry, or a GGUF given by path)
    it is estimated from the default model's figure by file size: decoding on a CPU reads the
    whole model once a token, so the speed goes about as the inverse of the size.
    """
    if served.entry is not None and served.entry.decode_tokens_per_s is not None:
        return served.entry.decode_tokens_per_s
    reference = find_entry(DEFAULT_MODEL)
    assert reference.decode_tokens_per_s is not None
    size = served.path.stat().st_size
    return reference.decode_tokens_per_s * reference.size / max(size, 1)


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
            "--prompt-cache-mib", str(local.prompt_cache_mib),
            "--slot-affinity" if local.slot_affinity else "--no-slot-affinity",
            "--ready-file", str(ready),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if local.chat_format is not None:  # else the child uses the GGUF's own template
            command += ["--chat-format", local.chat_format]
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


def request_deadline_s(served: ServedModel, max_tokens: int, floor_s: float) -> float:
    """How long one request to the local model may take: a full answer, twice, with margin.

    With two requests in flight per slot a request may wait for the one ahead of it, so the
    deadline covers two answers of ``max_tokens`` at the model's decoding speed plus reading a
    full context each, times :data:`DEADLINE_MARGIN` for a machine busier or slower than the
    one measured; never under ``floor_s`` (the remote default).
    """
    decode = decode_tokens_per_s(served)
    one_answer = max_tokens / decode + served.config.ctx_size / (PROMPT_SPEEDUP * decode)
    return max(floor_s, round(DEADLINE_MARGIN * 2 * one_answer))


@contextmanager
def endpoint_for_run(config: RunConfig) -> Iterator[RunConfig]:
    """The run's config, pointing at the local model when no endpoint is configured.

    With an endpoint configured nothing is started. Otherwise the local model serves the
    run: the model name is its file name; unless the run sets its own, answers are capped at
    the model's ``max_tokens`` and stopped by its stop sequences (the catalogue's defaults, or
    ``[local_model]``), requests in flight are two per slot (more would only wait in the
    server's queue, against their deadline), and a request's deadline is what two answers take
    at the model's speed (:func:`request_deadline_s`); no API key is sent to it.
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
    served = resolve_model(config.local_model)
    local = served.config
    config = config.model_copy(update={"local_model": local})
    with start_local_model(config, served.path) as url:
        endpoint = config.endpoint
        updates: dict[str, Any] = {
            "base_url": url,
            "model": served.alias,
            "send_api_key": False,
            "embedded": True,
        }
        if "max_tokens" not in endpoint.model_fields_set:
            updates["max_tokens"] = local.max_tokens
        if "stop" not in endpoint.model_fields_set:
            updates["stop"] = local.stop_for(get_task_kind(config.task).output)
        run_updates: dict[str, Any] = {"endpoint": endpoint.model_copy(update=updates)}
        if "concurrency" not in config.model_fields_set:  # a short queue per slot is enough
            run_updates["concurrency"] = 2 * local.parallel
        if "call_deadline_s" not in config.retry.model_fields_set:
            max_tokens = updates.get("max_tokens", endpoint.max_tokens) or local.max_tokens
            deadline = request_deadline_s(served, max_tokens, config.retry.call_deadline_s)
            run_updates["retry"] = config.retry.model_copy(update={"call_deadline_s": deadline})
        yield config.model_copy(update=run_updates)
