"""How the embedded local model is served: its defaults, in one place (``[local_model]``).

The defaults suit the packaged Gemma 3 270M (Q4_K_M) on a small machine; every one can be
changed in the ``[local_model]`` table of the config file or with ``refine serve-model`` flags.
Where the weights come from and how the server starts live in :mod:`flows.local.model`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LocalModelConfig", "default_parallel"]


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
