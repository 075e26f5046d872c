"""One reader of output files: every consumer (resume, run stats, progress watcher, eval and
export's RecordReader, the shard merge) sees the same records, by the same three rules: the
latest record of an id wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.data.output import OutputLog
from flows.data.output_reader import OutputScan, RecordReader, parse_record
from flows.data.records import Draft, Trajectory, Usage
from flows.sharding import merge_parts
from flows.ui.progress import OutputWatcher
from flows.ui.run_stats import read_run_stats
from refine.errors import InputError


def line(item_id: str, status: str = "ok", text: str = "first", tokens: int = 5) -> bytes:
    """One output line as ``refine run`` writes it: two drafts of ``tokens`` tokens each."""
    usage = Usage(prompt_tokens=tokens - 1, completion_tokens=1)
    drafts = [Draft(step=step, text=f"{text} {step}", usage=usage) for step in (1, 2)]
    record = Trajectory(
        id=item_id,
        status="failed" if status == "failed" else "ok",
        output=None if status == "failed" else f"{text} 2",
        drafts=drafts,
        stop_reason="error" if status == "failed" else "max_steps",
        error="HTTP 500" if status == "failed" else None,
    )
    return (record.model_dump_json() + "\n").encode()


WHOLE = [line("a"), line("b", "failed"), line("a", text="second", tokens=100), line("c")]
TORN = b'{"id": "d", "status": "ok", "dra'  # a writer mid-line


def write(path: Path, lines: list[bytes], tail: bytes = TORN) -> Path:
    path.write_bytes(b"".join(lines) + tail)
    return path


def test_every_reader_keeps_the_latest_record_of_an_id_and_leaves_the_torn_tail_out(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "out.jsonl", WHOLE)
    offset = len(b"".join(WHOLE))  # where the last whole line ends
    # b and c, two drafts of 5 tokens each, and a's second record (100 each): its first is out
    tokens = 2 * 2 * 5 + 2 * 100

    scan = OutputScan(path)
    assert [(n, r["id"]) for n, r in scan.latest_records()] == [(2, "b"), (3, "a"), (4, "c")]
    assert (scan.offset, scan.torn_bytes, scan.superseded, scan.foreign) == (
        offset,
        len(TORN),
        1,
        [],
    )
    assert scan.failed_ids() == {"b"}

    reader = RecordReader(path)  # refine eval and refine export
    records = [(n, r.id, r.drafts[0].text) for n, r in reader]
    assert records == [(2, "b", "first 1"), (3, "a", "second 1"), (4, "c", "first 1")]
    assert reader.superseded == 1 and reader.torn_tail is True

    stats = read_run_stats(path)  # the table and sample artifacts
    assert (stats.records, stats.ok, stats.failed, stats.failed_ids) == (3, 2, 1, ["b"])
    assert [sample["id"] for sample in stats.samples] == ["b", "a", "c"]
    assert stats.samples[1]["drafts"][0]["text"] == "second 1"
    assert sum(row["tokens"] for row in stats.rows()) == tokens
    assert (stats.complete_bytes, stats.superseded, stats.foreign) == (offset, 1, 0)

    watcher = OutputWatcher(path)  # live progress: items by the rule, requests as spent
    watcher.poll()
    assert watcher.ids == {"a", "b", "c"} and (watcher.done, watcher.failed) == (3, 1)
    assert (watcher.tokens, watcher.requests, watcher.offset) == (tokens + 2 * 5, 8, offset)

    merged = tmp_path / "merged.jsonl"  # shard parts into the output
    assert merge_parts(merged, [path]) == 3
    assert [(r.id, r.drafts[0].text) for _, r in RecordReader(merged)] == [
        ("b", "first 1"),
        ("a", "second 1"),
        ("c", "first 1"),
    ]

    assert path.read_bytes() == b"".join(WHOLE) + TORN  # none of the readers above wrote
    with OutputLog(path) as out:  # resume: the only reader that repairs, under its lock
        assert out.finished == {"a", "b", "c"} and out.failed == {"b"}
        assert (out.records_before, out.superseded, out.retrying) == (3, 1, set())
        assert (out.complete_bytes, out.repaired_bytes) == (offset, len(TORN))
    assert path.read_bytes() == b"".join(WHOLE)


def test_a_retried_record_supersedes_the_failed_one_for_every_reader(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", [line("a"), line("b", "failed"), line("c", "failed")])
    watcher = OutputWatcher(path)
    watcher.poll()
    assert (watcher.done, watcher.failed) == (3, 2)
    with OutputLog(path, retry_failed=True) as out:  # refine run --retry-failed
        assert out.finished == {"a"} and out.retrying == out.failed == {"b", "c"}
        assert out.records_before == 3
        retried = Trajectory.model_validate_json(line("b", text="retried"))
        assert out.append(retried) is True
        assert out.append(retried) is False  # once per run, like any id
        assert out.append(Trajectory.model_validate_json(line("a"))) is False
    watcher.poll()  # b moved from failed to ok: still three items done
    assert (watcher.done, watcher.failed) == (3, 1)

    assert [(r.id, r.status, r.output) for _, r in RecordReader(path)] == [
        ("a", "ok", "first 2"),
        ("c", "failed", None),
        ("b", "ok", "retried 2"),
    ]
    stats = read_run_stats(path)
    assert (stats.records, stats.ok, stats.failed, stats.failed_ids) == (3, 2, 1, ["c"])
    assert stats.superseded == 1
    with OutputLog(path) as out:  # a plain resume: b is finished, c still failed
        assert out.finished == {"a", "b", "c"} and out.failed == {"c"} and out.retrying == set()
    assert path.read_bytes().count(b'"id":"b"') == 2  # appended, never rewritten


FOREIGN = [
    b"\n",
    b"   \n",
    b"not json\n",
    b"[1, 2]\n",
    b'"a"\n',
    b'{"status": "ok"}\n',
    b'{"id": 7, "status": "ok"}\n',
    b'{"id": "x", "status": null}\n',
]


@pytest.mark.parametrize("bad", FOREIGN, ids=repr)
def test_a_foreign_or_empty_line_refuses_data_readers_and_is_skipped_by_figures(
    tmp_path: Path, bad: bytes
) -> None:
    lines = [WHOLE[0], WHOLE[1], bad, WHOLE[3]]
    path = write(tmp_path / "out.jsonl", lines)
    assert parse_record(bad) is None

    with pytest.raises(InputError) as resumed:
        OutputLog(path).__enter__()
    assert [p.line for p in resumed.value.problems] == [3]
    assert f"{path}:line 3: not a record written by refine" in str(resumed.value)

    with pytest.raises(InputError) as evaluated:
        list(RecordReader(path))
    assert evaluated.value.path == path and [p.line for p in evaluated.value.problems] == [3]

    merged = tmp_path / "merged.jsonl"
    with pytest.raises(InputError) as merging:
        merge_parts(merged, [path])
    assert merging.value.path == path and [p.line for p in merging.value.problems] == [3]

    stats = read_run_stats(path)  # figures: the same records, the foreign line counted
    assert (stats.records, stats.failed_ids, stats.foreign) == (3, ["b"], 1)
    watcher = OutputWatcher(path)
    watcher.poll()
    assert watcher.ids == {"a", "b", "c"} and (watcher.done, watcher.foreign) == (3, 1)

    assert path.read_bytes() == b"".join(lines) + TORN  # refused files are left as they were


def test_an_empty_line_is_named_as_such_by_eval_and_export(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", [WHOLE[0], b"\n", WHOLE[1]], tail=b"")
    with pytest.raises(InputError, match="line 2: an empty line, not a record"):
        list(RecordReader(path))


def test_the_watcher_goes_on_from_the_resume_scan_and_waits_for_a_torn_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "out.jsonl", WHOLE[:2])
    with OutputLog(path) as out:  # the run's one scan: records so far and where they end
        watcher = OutputWatcher(path, offset=out.complete_bytes, done=out.records_before)
        out.append(Trajectory.model_validate_json(WHOLE[3]))
        with path.open("ab") as writer:
            writer.write(line("d")[:30])  # a record half written
            writer.flush()
            watcher.poll()
            assert (watcher.done, watcher.ids) == (3, {"c"})
            writer.write(line("d")[30:])
        watcher.poll()
    assert (watcher.done, watcher.ids, watcher.failed) == (4, {"c", "d"}, 0)
    assert watcher.offset == path.stat().st_size


def test_the_watcher_of_a_retry_counts_a_retried_item_once(tmp_path: Path) -> None:
    path = write(tmp_path / "out.jsonl", [line("a"), line("b", "failed")], tail=b"")
    with OutputLog(path, retry_failed=True) as out:  # as refine_batch starts its progress
        watcher = OutputWatcher(path, offset=out.complete_bytes, done=len(out.finished))
        assert watcher.done == 1  # b is to be done again
        out.append(Trajectory.model_validate_json(line("b", text="retried")))
        watcher.poll()
    assert (watcher.done, watcher.failed, watcher.ids) == (2, 0, {"b"})


def test_a_missing_file_is_empty_to_figures_and_an_error_to_eval(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    assert read_run_stats(missing).records == 0
    watcher = OutputWatcher(missing)
    watcher.poll()
    assert (watcher.done, watcher.offset) == (0, 0)
    with pytest.raises(InputError, match="file not found"):
        list(RecordReader(missing))
    assert merge_parts(tmp_path / "out.jsonl", [missing]) == 0


def test_a_foreign_line_nested_deeper_than_the_stack_is_foreign(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    assert parse_record(deep) is None
    path = write(tmp_path / "out.jsonl", [WHOLE[0], deep, WHOLE[1]])
    with pytest.raises(InputError) as resumed:  # the resume names the line, never crashes
        OutputLog(path).__enter__()
    assert [p.line for p in resumed.value.problems] == [2]
    assert read_run_stats(path).foreign == 1
