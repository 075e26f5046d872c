"""Datasets as users have them: Parquet, Hugging Face datasets saved to disk, a Hub name, with
their own column names mapped to the template variables, and a few rows chosen first."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config.run import RunConfig, build_run_config
from flows.data.reading import ItemStream
from flows.loop.preflight import load_input
from refine.errors import ConfigError, InputError, MissingFieldsError


def _config(**input_table: object) -> RunConfig:
    return build_run_config({"task": "summarize", "input": input_table})


def _news(path: Path, rows: int, text_size: int = 40) -> Path:
    """A Parquet file with a news dataset's own column names (CNN/DailyMail's)."""
    table = pa.table(
        {
            "guid": [f"n{i:06d}" for i in range(rows)],
            "article": [f"Article {i}: " + "x" * text_size for i in range(rows)],
            "highlights": [f"Summary {i}." for i in range(rows)],
        }
    )
    pq.write_table(table, path, row_group_size=4096)
    return path


def test_parquet_with_mapped_columns(tmp_path: Path) -> None:
    path = _news(tmp_path / "news.parquet", 5)
    checked = load_input(
        path, _config(map={"text": "article", "id": "guid", "reference": "highlights"})
    )
    items = list(checked.items)
    assert [item.id for item in items] == [f"n{i:06d}" for i in range(5)]
    assert items[2].fields == {"text": "Article 2: " + "x" * 40}  # the mapped columns go
    assert items[2].reference == "Summary 2." and items[2].line == 3  # row numbers from 1
    assert checked.rows_read == 5 and checked.ids == [item.id for item in items]


def test_an_unmapped_template_variable_names_the_rows_and_the_columns(tmp_path: Path) -> None:
    """Parquet knows its columns: one line, before any row is read. A CSV or JSONL file names
    every row, then its columns (a CSV's header) and the --map to use."""
    path = _news(tmp_path / "news.parquet", 3)
    with pytest.raises(MissingFieldsError) as info:
        load_input(path, _config(map={"id": "guid"}))
    message = str(info.value)
    assert f"{path}: field 'text': no column feeds it, but the task's templates use it" in message
    assert "(columns: guid, article, highlights)" in message and "--map" in message
    assert "line 1" not in message
    csv = tmp_path / "news.csv"
    csv.write_text("guid,article\ng1,one\ng2,two\n")
    with pytest.raises(MissingFieldsError) as info:
        load_input(csv, _config())
    message = str(info.value)
    assert f"{csv}:line 2, field 'text'" in message and f"{csv}:line 3, field 'text'" in message
    assert "The dataset's columns: guid, article." in message and "--map" in message


def test_a_mapping_to_a_missing_column_fails_before_reading_a_row(tmp_path: Path) -> None:
    path = _news(tmp_path / "news.parquet", 3)
    with pytest.raises(InputError) as info:
        load_input(path, _config(map={"text": "articel"}))
    message = str(info.value)
    assert "field 'text': no column 'articel' in the dataset (--map text=articel)" in message
    assert "its columns: guid, article, highlights" in message


def test_a_jsonl_row_without_the_mapped_column_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"id": "a", "body": "one"}, {"id": "b", "text": "two"}, {"id": "c", "body": "3"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(InputError) as info:
        load_input(path, _config(map={"text": "body"}))
    assert f"{path}:line 2, field 'text': the row has no column 'body'" in str(info.value)
    checked = load_input(
        path, _config(map={"text": "body"}).model_copy(update={"skip_invalid": True})
    )
    assert checked.ids == ["a", "c"] and checked.skipped_lines == [2] and checked.rows_read == 3


def test_a_csv_header_without_the_mapped_column(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,body\n1,one\n2,two\n")
    with pytest.raises(InputError, match=r"no column 'article' in the dataset.*columns: id, body"):
        load_input(path, _config(map={"text": "article"}))


def test_limit_takes_the_first_rows_and_sample_a_seeded_random_few(tmp_path: Path) -> None:
    path = _news(tmp_path / "news.parquet", 200)
    mapped = {"text": "article", "id": "guid"}
    first = load_input(path, _config(map=mapped, limit=3))
    assert first.ids == ["n000000", "n000001", "n000002"] and first.rows_read == 3
    assert first.selection == "the first 3 rows (--limit 3)"
    drawn = [load_input(path, _config(map=mapped, sample=5, seed=7)).ids for _ in range(2)]
    assert drawn[0] == drawn[1] == sorted(drawn[0])  # the same rows, in file order
    other = load_input(path, _config(map=mapped, sample=5, seed=8)).ids
    assert other != drawn[0] and len(set(drawn[0])) == 5
    # the same rows from the same data in another format: positions, not the reader, decide
    jsonl = tmp_path / "news.jsonl"
    table = pq.read_table(path).to_pylist()
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in table))
    assert load_input(jsonl, _config(map=mapped, sample=5, seed=7)).ids == drawn[0]
    everything = load_input(path, _config(map=mapped, sample=500, seed=1))
    assert len(everything.ids) == 200


def test_limit_and_sample_together_are_refused() -> None:
    with pytest.raises(Exception, match="limit and sample both choose rows"):
        _config(limit=2, sample=2)


def test_a_big_parquet_file_is_never_held_whole(tmp_path: Path) -> None:
    """20,000 rows of 2 KB: 40 MB of text once read. The check and the run's iteration read a
    record batch at a time, so neither holds more than a few blocks of rows (and the ids)."""
    path = _news(tmp_path / "big.parquet", 20_000, text_size=2_000)
    config = _config(map={"text": "article", "id": "guid"})
    tracemalloc.start()
    try:
        checked = load_input(path, config)
        _, check_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        seen = sum(1 for _ in checked.items)
        _, run_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(checked.items, ItemStream) and seen == len(checked.items) == 20_000
    assert check_peak < 20_000_000, check_peak  # holding the rows: about 60,000,000
    assert run_peak < 20_000_000, run_peak


def test_a_saved_dataset_with_splits(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {"question_id": ["q1", "q2"], "body": ["What is 2+2?", "Capital of France?"]}
    folder = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
    ).save_to_disk(str(folder))
    config = _config(map={"text": "body", "id": "question_id"})
    with pytest.raises(InputError, match="choose a split with --split: train, test"):
        load_input(folder, config)
    checked = load_input(folder, _config(map={"text": "body", "id": "question_id"}, split="test"))
    assert [(i.id, i.fields["text"]) for i in checked.items] == [
        ("q1", "What is 2+2?"),
        ("q2", "Capital of France?"),
    ]
    with pytest.raises(InputError, match="no split 'dev'; choose a split with --split"):
        load_input(folder, _config(map={"text": "body"}, split="dev"))


def test_a_folder_that_is_not_a_saved_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a dataset saved by Hugging Face datasets"):
        load_input(tmp_path, _config())


def test_a_hub_name_where_the_hub_cannot_be_reached(tmp_path: Path) -> None:
    """In a fresh process, as a user meets it: the Hub's address set to a closed port."""
    code = textwrap.dedent(
        """
        from pathlib import Path
        from flows.config.run import build_run_config
        from flows.loop.preflight import load_input
        from refine.errors import InputError
        try:
            load_input(Path("someone/news"), build_run_config({"task": "summarize"}))
        except InputError as exc:
            print(exc)
        """
    )
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert "someone/news: not a file or folder here, and the Hugging Face Hub" in done.stdout
    assert "(http://127.0.0.1:9) cannot be reached" in done.stdout
    assert "save_to_disk(FOLDER)" in done.stdout and "Traceback" not in done.stderr


def test_the_input_table_of_a_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "refine.toml"
    config_file.write_text('[input]\nmap = {text = "article", id = "guid"}\nsample = 3\nseed = 5\n')
    config = build_run_config({"task": "summarize"}, config_file)
    assert config.input.map == {"text": "article", "id": "guid"}
    assert (config.input.sample, config.input.seed, config.input.limit) == (3, 5, None)
    config_file.write_text('[input]\nmap = {"te xt" = "article"}\n')
    bad_name = r"refine.toml: invalid configuration\n  input\.map: 'te xt' is not a template"
    with pytest.raises(ConfigError, match=bad_name):
        build_run_config({}, config_file)


def test_a_split_or_subset_that_cannot_apply_is_refused(tmp_path: Path) -> None:
    """Rows of another split than the one asked for would run without a word."""
    datasets = pytest.importorskip("datasets")
    single = tmp_path / "single"
    datasets.Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(single))
    with pytest.raises(InputError, match="one dataset without splits, so --split test cannot"):
        load_input(single, _config(split="test"))
    parquet = _news(tmp_path / "news.parquet", 2)
    with pytest.raises(InputError, match="--split test applies to Hugging Face datasets"):
        load_input(parquet, _config(split="test", map={"text": "article"}))
    with pytest.raises(InputError, match="--subset 3.0.0 applies to a Hub dataset"):
        load_input(single, _config(subset="3.0.0"))
    checked = load_input(single, _config())
    assert checked.selection is None and checked.ids == ["1", "2"]


def test_the_selection_says_what_was_taken(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    rows = datasets.Dataset.from_dict({"text": ["a", "b", "c"]})
    datasets.DatasetDict({"train": rows, "test": rows}).save_to_disk(str(folder))
    assert load_input(folder, _config(split="test", limit=2)).selection == (
        "split test: the first 2 rows (--limit 2)"
    )
    assert load_input(folder, _config(split="train")).selection == "split train: all 3 rows"
    path = _news(tmp_path / "news.parquet", 4)
    many = load_input(path, _config(map={"text": "article"}, sample=50, seed=1))
    assert many.selection == "all 4 rows (--sample 50 asks for more than the dataset holds)"


def test_bytes_are_text_when_they_are_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"text": pa.array([b"caf\xc3\xa9", b"\xff\xfe"], pa.binary())}), path)
    with pytest.raises(InputError) as info:
        load_input(path, _config())
    assert f"{path}:line 2, field 'text': bytes that are not UTF-8 text (byte 1)" in str(info.value)
    checked = load_input(path, _config().model_copy(update={"skip_invalid": True}))
    assert [item.fields["text"] for item in checked.items] == ["café"]


def test_a_limit_on_the_command_line_overrides_a_sample_in_the_config(tmp_path: Path) -> None:
    config_file = tmp_path / "refine.toml"
    config_file.write_text("[input]\nsample = 3\nseed = 4\n")
    config = build_run_config({"input": {"limit": 2}}, config_file)
    assert (config.input.limit, config.input.sample) == (2, None)
    with pytest.raises(ConfigError, match="--sample N --sample-seed S for a seeded random N"):
        build_run_config({"input": {"limit": 2, "sample": 3}})
