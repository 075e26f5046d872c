"""A dataset saved in another encoding than UTF-8 is named as such, not line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.data.dataset import read_rows
from refine.errors import InputError

ROWS = '{"id": "a", "text": "Grüße"}\n{"id": "b", "text": "Ça va"}\n'


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_utf16_or_utf32_file_is_one_problem_of_the_whole_file(
    tmp_path: Path, encoding: str, suffix: str
) -> None:
    text = ROWS if suffix == ".jsonl" else "id,text\na,Grüße\nb,Ça va\n"
    path = tmp_path / f"data{suffix}"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # what an editor saving "UTF-16 BE with BOM" writes
    path.write_bytes(data)
    with pytest.raises(InputError) as caught:
        read_rows(path)
    [problem] = caught.value.problems
    width = "32" if encoding == "utf-32" else "16"
    assert problem.line == 0 and f"the file is UTF-{width}" in problem.message


def test_a_utf8_file_with_a_byte_order_mark_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("id,text\na,Grüße\n".encode("utf-8-sig"))
    items, problems = read_rows(path)
    assert problems == [] and items[0].fields == {"text": "Grüße"}
