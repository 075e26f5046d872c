"""Writing a file so that readers see the old one or the whole new one, never half of it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "write_bytes_atomic"]


@contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle on a temp file beside ``path``, renamed onto it when the block ends.

    If the block raises (or the process is interrupted), the temp file is removed and ``path``
    is left as it was: a failed export or report never leaves a half-written file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666, unlike mkstemp's 0o600: the file gets the umask's usual permissions
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as fh:
        fh.write(data)
