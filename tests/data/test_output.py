"""The append-only output: one flushed line per item, resumable, never an item twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.data.output import OutputLog
from flows.data.records import Draft, Trajectory, Usage
from refine.errors import ConfigError, InputError


def _record(item_id: str, status: str = "ok") -> Trajectory:
    if status == "failed":
        return Trajectory(id=item_id, status="failed", stop_reason="error", error="429 x4")
    draft = Draft(step=1, text=f"answer to {item_id}\nsecond line", usage=Usage(prompt_tokens=3))
    return Trajectory(
        id=item_id, status="ok", output=draft.text, drafts=[draft], stop_reason="max_steps"
    )


def _lines(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def test_each_append_is_one_line_readable_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out" / "result.jsonl"  # the folder is created
    with OutputLog(path) as out:
        assert out.finished == set()
        assert out.append(_record("a")) is True
        # Another reader sees the record while the log is still open: it was flushed.
        with path.open(encoding="utf-8") as reader:
            assert [json.loads(line)["id"] for line in reader] == ["a"]
        assert out.append(_record("b", "failed")) is True
        assert [r["id"] for r in _lines(path)] == ["a", "b"]

    records = _lines(path)
    assert Trajectory.model_validate(records[0]) == _record("a")
    assert Trajectory.model_validate(records[1]) == _record("b", "failed")


def test_reopen_returns_finished_ids_and_appends_after_them(tmp_path: Path) -> None:
    path = tmp_path / "result.jsonl"
    with OutputLog(path) as out:
        out.append(_record("a"))
        out.append(_record("b", "failed"))  # a failure is finished too: it is not redone

    with OutputLog(path) as out:
        assert out.finished == {"a", "b"} and out.repaired_bytes == 0
        assert out.append(_record("c")) is True

    assert [r["id"] for r in _lines(path)] == ["a", "b", "c"]


def test_an_id_is_never_written_twice(tmp_path: Path) -> None:
    path = tmp_path / "result.jsonl"
    with OutputLog(path) as out:
        assert out.append(_record("a")) is True
        assert out.append(_record("a", "failed")) is False
    with OutputLog(path) as out:
        assert out.append(_record("a")) is False
    assert [(r["id"], r["status"]) for r in _lines(path)] == [("a", "ok")]


def test_torn_last_line_is_cut_off_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "result.jsonl"
    with OutputLog(path) as out:
        out.append(_record("a"))
    whole = path.read_bytes()
    torn = _record("b").model_dump_json().encode()[:25]  # a kill mid-write
    path.write_bytes(whole + torn)

    with OutputLog(path) as out:
        assert out.finished == {"a"}
        assert out.repaired_bytes == len(torn)
        assert path.read_bytes() == whole
        out.append(_record("b"))

    assert [r["id"] for r in _lines(path)] == ["a", "b"]


def test_file_of_only_a_torn_line_resumes_empty(tmp_path: Path) -> None:
    path = tmp_path / "result.jsonl"
    path.write_bytes(b'{"id": "a", "sta')
    with OutputLog(path) as out:
        assert out.finished == set() and out.repaired_bytes == 16
        out.append(_record("a"))
    assert [r["id"] for r in _lines(path)] == ["a"]


@pytest.mark.parametrize(
    "bad", [b"{not json", b'{"status": "ok"}', b"[1, 2]", b'"a"', b""], ids=repr
)
def test_corrupt_complete_line_is_refused_and_left_alone(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "result.jsonl"
    good = _record("a").model_dump_json().encode()
    data = good + b"\n" + bad + b"\n" + _record("c").model_dump_json().encode() + b"\n"
    torn = b'{"id": "d", "st'
    path.write_bytes(data + torn)

    with pytest.raises(InputError) as info:
        OutputLog(path).__enter__()

    assert info.value.path == path
    assert [p.line for p in info.value.problems] == [2]
    assert f"{path}:line 2: not a record written by refine" in str(info.value)
    assert "choose another --output" in str(info.value)
    # A file we refuse is not ours to repair: the torn tail stays until someone decides.
    assert path.read_bytes() == data + torn
    path.write_bytes(good + b"\n")
    with OutputLog(path) as out:  # the refusal released the lock
        assert out.finished == {"a"}


def test_second_writer_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "result.jsonl"
    with OutputLog(path) as first:
        first.append(_record("a"))
        with pytest.raises(ConfigError, match="another run is writing to this output") as info:
            OutputLog(path).__enter__()
        assert str(path) in str(info.value)
        assert first.append(_record("b")) is True
    with OutputLog(path) as again:  # the lock goes with the first writer
        assert again.finished == {"a", "b"}


def test_append_when_closed_is_an_error(tmp_path: Path) -> None:
    out = OutputLog(tmp_path / "result.jsonl")
    with pytest.raises(RuntimeError, match="not open"):
        out.append(_record("a"))
    with out:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        out.append(_record("a"))
