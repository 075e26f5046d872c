"""Atomic writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from refine.atomic_file import atomic_write, write_bytes_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_bytes(b"old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_a_finished_write_replaces_the_file_with_the_usual_permissions(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "sub" / "plot.png", b"new")
    finally:
        os.umask(old_umask)
    path = tmp_path / "sub" / "plot.png"
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["plot.png"]
