"""The embedded local model's weights: which file, its serving defaults, and whether it can run.

With no endpoint configured, ``refine run`` serves a GGUF model itself through
llama-cpp-python (the ``[local]`` extra): by default the packaged Qwen2.5-Coder 0.5B Instruct
(Q4_K_M), or the model ``[local_model] model`` / ``--local-model`` names, from the catalogue
(:mod:`flows.local.catalogue`) or as a path to any GGUF file. How it is served (slots, threads,
context, chat format, stop sequences) is :class:`flows.config.local.LocalModelConfig`, with the
catalogue entry's defaults where the configuration sets none (:func:`serving_config`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.config.local import LocalModelConfig, is_model_path
from flows.local.assembly import assemble
from flows.local.catalogue import DEFAULT_MODEL, CatalogueEntry, find_entry
from refine.errors import ConfigError

__all__ = [
    "INSTALL_HINT",
    "ServedModel",
    "check_local_extra",
    "model_alias",
    "resolve_model",
    "serving_config",
]

INSTALL_HINT = "pip install 'prefect-refine[local]'"
"""The command that installs what the local model needs (builds llama.cpp: minutes)."""

_FROM_CATALOGUE = ("chat_format", "stop", "stop_code", "max_tokens", "ctx_size")
"""The serving settings a catalogue entry gives a default for."""


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


def _checked_file(model_path: Path) -> Path:
    path = Path(os.path.expanduser(model_path))
    if not path.is_file():
        raise ConfigError(f"{path}: model file not found (--local-model / [local_model] model)")
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ConfigError(f"{path}: not a GGUF model file (it lacks the GGUF magic bytes)")
    return path


@dataclass(frozen=True)
class ServedModel:
    """The model a run serves: its file, its catalogue entry, and the settings it runs with."""

    path: Path
    entry: CatalogueEntry | None
    """None when the model was given as a path to a GGUF file."""
    config: LocalModelConfig
    """``[local_model]`` with the entry's defaults where it sets none (:func:`serving_config`)."""

    @property
    def alias(self) -> str:
        """The model name the server answers to (and the request cache keys carry)."""
        return model_alias(self.path)


def serving_config(local: LocalModelConfig, entry: CatalogueEntry | None) -> LocalModelConfig:
    """``local`` with ``entry``'s chat format, stops and answer cap where ``local`` sets none.

    A GGUF given by path keeps :class:`LocalModelConfig`'s own defaults, which are the instruct
    models': the chat template inside the file, no stop sequences, 512 tokens.
    """
    if entry is None:
        return local
    defaults = {
        "chat_format": entry.chat_format,
        "stop": list(entry.stop),
        "stop_code": list(entry.stop_code),
        "max_tokens": entry.max_tokens,
        "ctx_size": entry.ctx_size,
    }
    unset = {key: defaults[key] for key in _FROM_CATALOGUE if key not in local.model_fields_set}
    return local.model_copy(update=unset)


def resolve_model(
    local: LocalModelConfig,
    models_dir: Path | None = None,
    search_path: Sequence[str] | None = None,
) -> ServedModel:
    """The file and settings for ``[local_model]``: a catalogue name, a GGUF path, or the default.

    A catalogue model is assembled into the cache on first use (:func:`assemble`); an unknown
    name is a ConfigError listing the catalogue.
    """
    choice = local.model or DEFAULT_MODEL
    if is_model_path(choice):
        return ServedModel(_checked_file(Path(choice)), None, local)
    entry = find_entry(choice)
    return ServedModel(
        assemble(entry, models_dir, search_path), entry, serving_config(local, entry)
    )


def model_alias(model_path: Path) -> str:
    """The model name the server answers to: the file's name, so the cache tells models apart."""
    return model_path.name.removesuffix(".gguf")
