"""Writing export lines to JSONL or Parquet, never leaving a half-written file behind.

Lines go to a temporary file in the target's folder, which replaces the target only once every
line is written (:mod:`refine.atomic_file`); on any error the temporary file is removed and the
target is as it was. JSONL is streamed a line at a time; Parquet goes through ``pyarrow``'s
``ParquetWriter`` in batches, with an explicit schema per format (see docs/export.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from pydantic import BaseModel

from flows.export.formats import ExportFormat
from refine.atomic_file import atomic_write
from refine.errors import ConfigError

__all__ = ["ExportWriter", "FileKind", "file_kind", "open_export", "parquet_row", "parquet_schema"]

FileKind = Literal["jsonl", "parquet"]
PARQUET_HINT = "pip install 'prefect-refine[parquet]'"
BATCH_ROWS = 1000  # Parquet rows buffered per record batch: memory stays bounded


class ExportWriter(Protocol):
    """Takes export lines one at a time."""

    def write(self, line: BaseModel) -> None: ...


def file_kind(path: Path) -> FileKind:
    """JSONL or Parquet, from the target's suffix; Parquet needs pyarrow importable."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix != ".parquet":
        raise ConfigError(f"--to {path}: the file must end in .jsonl or .parquet")
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError(f"--to {path}: Parquet needs pyarrow: {PARQUET_HINT}") from None
    return "parquet"


def _reference_excluded(fmt: ExportFormat, with_reference: bool) -> dict[str, Any] | None:
    """What model_dump leaves out: the reference, unless asked for."""
    if with_reference:
        return None
    return {"state": {"reference"}} if fmt == "trajectory" else {"reference": True}


class _JsonlWriter:
    def __init__(self, fh: IO[bytes], fmt: ExportFormat, with_reference: bool) -> None:
        self._fh = fh
        self._exclude = _reference_excluded(fmt, with_reference)

    def write(self, line: BaseModel) -> None:
        text = line.model_dump_json(by_alias=True, exclude=self._exclude)
        self._fh.write(text.encode("utf-8") + b"\n")

    def close(self) -> None:
        self._fh.flush()  # atomic_write closes the file


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def parquet_row(line: BaseModel, fmt: ExportFormat, with_reference: bool) -> dict[str, Any]:
    """A line as a row of :func:`parquet_schema`: free-form values (x, reference) become JSON
    strings, since their types vary from row to row; rewards become (label, value) pairs."""
    row = line.model_dump(mode="json", by_alias=True)
    holder = row["state"] if fmt == "trajectory" else row
    reference = holder.pop("reference")
    if with_reference:
        holder["reference_json"] = _json_or_none(reference)
    if fmt == "trajectory":
        row["state"]["x_json"] = _json_or_none(row["state"].pop("x"))
        row["rewards"] = list(row["rewards"].items())
    return row


def parquet_schema(fmt: ExportFormat, with_reference: bool) -> Any:
    """The pyarrow schema of one format; ``reference_json`` only with ``--with-reference``."""
    import pyarrow as pa

    reference = [pa.field("reference_json", pa.string())] if with_reference else []
    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    if fmt == "trajectory":
        state = pa.struct(
            [
                pa.field("x_json", pa.string()),
                pa.field("prior_steps", pa.list_(pa.int32())),
                pa.field("prior_drafts", pa.list_(pa.string())),
                pa.field("problems", pa.list_(pa.string())),
                pa.field("feedback", pa.string()),
                *reference,
            ]
        )
        return pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("step", pa.int32(), nullable=False),
                pa.field("kind", pa.string(), nullable=False),
                pa.field("state", state, nullable=False),
                pa.field("action", pa.string(), nullable=False),
                pa.field("rewards", pa.map_(pa.string(), pa.float64())),
                pa.field("reward", pa.float64()),
                pa.field("problems", pa.list_(pa.string())),
                pa.field("done", pa.bool_(), nullable=False),
                pa.field("return", pa.float64()),
                pa.field("return_to_go", pa.float64()),
                pa.field("stop_reason", pa.string()),
                pa.field("status", pa.string(), nullable=False),
                pa.field("tokens", pa.int64(), nullable=False),
            ]
        )
    if fmt == "sft":
        return pa.schema(
            [
                pa.field("id", pa.string(), nullable=False),
                pa.field("messages", messages, nullable=False),
                pa.field("reward", pa.float64()),
                pa.field("step", pa.int32(), nullable=False),
                *reference,
            ]
        )
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("prompt", messages, nullable=False),
            pa.field("chosen", messages, nullable=False),
            pa.field("rejected", messages, nullable=False),
            pa.field("chosen_reward", pa.float64(), nullable=False),
            pa.field("rejected_reward", pa.float64(), nullable=False),
            pa.field("chosen_step", pa.int32(), nullable=False),
            pa.field("rejected_step", pa.int32(), nullable=False),
            *reference,
        ]
    )


class _ParquetWriter:
    def __init__(self, fh: IO[bytes], fmt: ExportFormat, with_reference: bool) -> None:
        import pyarrow.parquet as pq

        self._fmt = fmt
        self._with_reference = with_reference
        self._schema = parquet_schema(fmt, with_reference)
        self._writer = pq.ParquetWriter(fh, self._schema)  # a file object: left open
        self._rows: list[dict[str, Any]] = []

    def write(self, line: BaseModel) -> None:
        self._rows.append(parquet_row(line, self._fmt, self._with_reference))
        if len(self._rows) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            batch = pa.RecordBatch.from_pylist(self._rows, schema=self._schema)
            self._writer.write_batch(batch)
            self._rows = []

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._writer.close()  # an empty export is still a valid file with the schema


@contextlib.contextmanager
def open_export(path: Path, fmt: ExportFormat, with_reference: bool) -> Iterator[ExportWriter]:
    """A writer whose lines appear at ``path`` all at once when the block ends without error
    (:func:`refine.atomic_file.atomic_write`); on an error ``path`` is left as it was."""
    kind = file_kind(path)
    with atomic_write(path) as fh:
        writer = (
            _JsonlWriter(fh, fmt, with_reference)
            if kind == "jsonl"
            else _ParquetWriter(fh, fmt, with_reference)
        )
        try:
            yield writer
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close()  # the temp file goes anyway: only release the writer
            raise
        writer.close()
