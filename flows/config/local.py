"""How the embedded local model is served: its defaults, in one place (``[local_model]``).

``model`` picks the model: a name from the catalogue (``refine models``;
:mod:`flows.local.catalogue`) or the path to any GGUF file; unset, the default
Qwen2.5-Coder 0.5B Instruct. The serving defaults here (the GGUF's own chat template, no stop
sequences, 512 tokens an answer) suit instruct models; for a catalogue model whose defaults
differ (the Gemma 3 270M base model: alpaca prompts, ``###`` stops),
:func:`flows.local.model.serving_config` fills in the fields this table leaves unset. Every one
can be changed in the ``[local_model]`` table of the config file or with ``refine serve-model``
flags. Where the weights come from and how the server starts live in :mod:`flows.local`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["LocalModelConfig", "default_parallel", "is_model_path"]


def is_model_path(value: str) -> bool:
    """Whether a ``model`` value names a file rather than a catalogue entry.

    Catalogue names hold no slash and do not end in ``.gguf``; a path to a file in the current
    folder is written ``./name.gguf`` or just ends in ``.gguf``.
    """
    return (
        "/" in value
        or os.sep in value
        or value.startswith(("~", "."))
        or value.lower().endswith(".gguf")
    )


def default_parallel() -> int:
    """One slot per core, at most four.

    Each slot is a process that maps the model file (the default is 491 MB). On 2 cores, two
    slots of one thread each answered 1.86x the requests per second of one slot with two threads
    (``python -m benchmarks.local_model``, figures in benchmarks/README.md): one request's
    decoding does not keep two cores busy on a model this small.
    """
    return max(1, min(4, os.cpu_count() or 1))


class LocalModelConfig(BaseModel):
    """How the embedded model is served; read from ``[local_model]`` in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None,
        description="a catalogue name (refine models) or a GGUF file; None = the default model",
    )
    parallel: int = Field(
        default_factory=default_parallel, ge=1, le=64, description="slots: requests at once"
    )
    ctx_size: int = Field(
        default=4096,
        ge=256,
        description="context per slot: prompt + answer; a catalogue model brings its own "
        "(8192 for the instruct models), a GGUF given by path gets 4096",
    )
    threads: int | None = Field(
        default=None, ge=1, description="threads per slot; None = cores divided by slots"
    )
    chat_format: str | None = Field(
        default=None,
        description=(
            "llama-cpp-python chat format; None = the chat template inside the GGUF "
            "(the catalogue's default for the model, e.g. 'alpaca' for the Gemma base model)"
        ),
    )
    stop: list[str] = Field(
        default_factory=list,
        description="stop sequences for prose tasks when the run sets none; none: end of turn",
    )
    stop_code: list[str] = Field(
        default_factory=list,
        description="stop sequences for code tasks when the run sets none",
    )
    weight_repack: bool = Field(
        default=False,
        description="llama.cpp's repacked/AMX weight buffers; off: they crash on AMX CPUs",
    )
    max_tokens: int = Field(
        default=512,
        gt=0,
        description="answer cap when the run sets none: enough for a HumanEval solution",
    )
    startup_timeout_s: float = Field(
        default=180.0, gt=0, description="how long to wait for the model to load and answer"
    )
    prompt_cache_mib: int = Field(
        default=512,
        ge=0,
        le=1 << 20,
        description=(
            "memory per slot for computed prompt prefixes (llama-cpp-python's RAM cache of "
            "model states, about 12 KB a token for the default model: 512 MiB holds some 40 "
            "prompts of 1,000 tokens), so a step re-reads only what changed since the item's "
            "last step; 0 = off"
        ),
    )
    slot_affinity: bool = Field(
        default=True,
        description=(
            "send a request to the free slot that already holds the longest prefix of its "
            "prompt (an item's next step goes where its last step ran); off: any free slot"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _model_path_is_model(cls, data: Any) -> Any:
        """The older ``model_path`` key still works: it is ``model`` given as a path."""
        if isinstance(data, dict) and data.get("model_path") is not None:
            data = dict(data)
            path = data.pop("model_path")
            if data.get("model") is not None and str(data["model"]) != str(path):
                raise ValueError("set model or model_path (the older name), not both")
            data["model"] = str(path)
        elif isinstance(data, dict) and isinstance(data.get("model"), Path):
            data = {**data, "model": str(data["model"])}
        return data

    @property
    def model_path(self) -> Path | None:
        """``model`` when it names a GGUF file (with ``~`` expanded), else None."""
        if self.model is None or not is_model_path(self.model):
            return None
        return Path(os.path.expanduser(self.model))

    def stop_for(self, output: str) -> list[str]:
        """The stop sequences for a task whose answers are ``output`` (``prose`` or ``code``:
        :attr:`prompts.TaskKind.output`)."""
        return list(self.stop_code if output == "code" else self.stop)

    def threads_per_slot(self) -> int:
        """Cores shared evenly between slots, at least one thread each."""
        if self.threads is not None:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.parallel)
