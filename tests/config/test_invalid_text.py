"""Configuration text that cannot travel: values that are not valid Unicode and API keys that
cannot be sent in an HTTP header are refused before any request, naming where they came from
(the flag, the variable, the file) but never the key itself.

Python hands over command-line arguments and environment variables whose bytes are not UTF-8
as lone surrogates (PEP 383); before this check one crashed the run with a UnicodeEncodeError
traceback from the Prefect client or the HTTP library.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config.run import EnvironmentSettings, build_run_config, resolve_api_key
from refine.errors import ConfigError
from tests.cli_helpers import cli_env, run_refine
from tests.fake_openai import FakeOpenAI
from tests.prefect_server import PrefectServer

NOT_UTF8 = "m\udcff"  # what ``--model $'m\xff'`` becomes in sys.argv
KEY = "sk-invalidtext-0123456789abcdef"


def _env(**values: str) -> EnvironmentSettings:
    return EnvironmentSettings.model_validate(values)


def test_a_flag_that_is_not_valid_unicode_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        build_run_config({"endpoint": {"model": NOT_UTF8}}, env=_env())
    assert "command line: invalid configuration" in str(caught.value)
    assert "endpoint.model: holds an unpaired surrogate \\udcff at character 2" in str(caught.value)


def test_a_variable_that_is_not_valid_unicode_is_named() -> None:
    with pytest.raises(ConfigError, match=r"environment: invalid configuration\n  endpoint.model"):
        build_run_config({}, env=_env(REFINE_MODEL=NOT_UTF8))


def test_lists_and_paths_are_searched(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"validators.1: holds an unpaired surrogate"):
        build_run_config({"validators": ["json", "re\ud83d"]}, env=_env())
    odd_folder = tmp_path / "cach\udce9"  # a valid Linux name, but not text a record can hold
    with pytest.raises(ConfigError, match=r"cache_dir: the path .* holds the byte 0xe9 at"):
        build_run_config({"cache_dir": odd_folder}, env=_env())
    with pytest.raises(ConfigError, match=r"environment: .*\n  template_dirs.0: the path"):
        build_run_config({}, env=_env(REFINE_TEMPLATE_DIR=str(odd_folder)))
    fine = tmp_path / "caché"
    assert build_run_config({"cache_dir": fine}, env=_env()).cache_dir == fine


@pytest.mark.parametrize(
    ("pasted", "where"),
    [(KEY + "\u200b", "U+200B at character 32"), ("sk-\u2013" + KEY[3:], "U+2013 at character 4")],
    ids=["zero-width space", "typographic dash"],
)
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(
    pasted: str, where: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_api_key(env=_env(OPENAI_API_KEY=pasted))
    assert where in str(caught.value) and "OPENAI_API_KEY" in str(caught.value)
    assert KEY[5:] not in str(caught.value)


def test_a_key_file_s_trailing_newline_is_not_part_of_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[endpoint]\napi_key = "  {KEY}\\n"\n', encoding="utf-8")
    key = resolve_api_key(config, env=_env())
    assert key is not None and key.get_secret_value() == KEY


def test_refine_run_refuses_them_before_any_request(
    fake_server: FakeOpenAI, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "input": "hello"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    base = ["run", str(data), "-o", str(out), "--base-url", fake_server.base_url, "--quiet"]
    env = cli_env(prefect_server, tmp_path, OPENAI_API_KEY=KEY)

    bad_flag = run_refine([*base, "--model", NOT_UTF8], env)
    assert bad_flag.returncode == 2, bad_flag.stderr
    assert "endpoint.model: holds an unpaired surrogate \\udcff" in bad_flag.stderr
    bad_key = run_refine([*base, "--model", "m"], {**env, "OPENAI_API_KEY": KEY + "\u200b"})
    assert bad_key.returncode == 2, bad_key.stderr
    assert "U+200B at character 32" in bad_key.stderr and KEY[5:] not in bad_key.stderr
    odd = tmp_path / "o\udcff.jsonl"  # what -o $'o\xff.jsonl' names
    url = ["--base-url", fake_server.base_url, "--model", "m", "--quiet"]
    bad_output = run_refine(["run", str(data), "-o", str(odd), *url], env)
    assert bad_output.returncode == 2, bad_output.stderr
    assert "--output: the path" in bad_output.stderr and "byte 0xff" in bad_output.stderr
    assert not odd.exists()
    odd_input = tmp_path / "d\udcff.jsonl"
    odd_input.write_bytes(data.read_bytes())
    bad_input = run_refine(["run", str(odd_input), "-o", str(out), *url], env)
    assert bad_input.returncode == 2 and "INPUT: the path" in bad_input.stderr, bad_input.stderr
    bad_cache = run_refine([*base, "--model", "m"], {**env, "REFINE_CACHE_DIR": str(odd)})
    assert bad_cache.returncode == 2 and "cache_dir: the path" in bad_cache.stderr
    for result in (bad_flag, bad_key, bad_output, bad_input, bad_cache):
        assert "Traceback" not in result.stdout + result.stderr
    assert fake_server.chat_requests() == []
    assert not out.exists() or out.read_bytes() == b""

    pasted = run_refine([*base, "--model", "m"], {**env, "OPENAI_API_KEY": KEY + "\n"})
    assert pasted.returncode == 0, pasted.stderr
    sent = {entry.headers.get("authorization") for entry in fake_server.chat_requests()}
    assert sent == {f"Bearer {KEY}"}
