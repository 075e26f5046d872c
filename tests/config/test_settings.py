"""Settings: CLI overrides > config file > environment > defaults, and the API key kept apart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.config.run import (
    EndpointConfig,
    EnvironmentSettings,
    RetryConfig,
    RunConfig,
    build_run_config,
    resolve_api_key,
)
from refine.errors import ConfigError
from tests.cli_helpers import run_refine

ENV_VARS = (
    "REFINE_API_KEY",
    "OPENAI_API_KEY",
    "REFINE_BASE_URL",
    "OPENAI_BASE_URL",
    "REFINE_MODEL",
    "REFINE_TEMPLATE_DIR",
    "REFINE_CACHE_DIR",
    "REFINE_CONFIG",
    "PREFECT_API_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the shell that runs the tests."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _toml(tmp_path: Path, text: str, name: str = "refine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = build_run_config(env=EnvironmentSettings())
    assert config == RunConfig()
    assert config.steps == 3 and config.endpoint.model is None
    assert config.endpoint.temperature == 0.7 and config.retry == RetryConfig()
    assert config.config_file is None


def test_environment_over_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    monkeypatch.setenv("REFINE_MODEL", "env-model")
    monkeypatch.setenv("REFINE_TEMPLATE_DIR", str(tmp_path / "templates"))
    monkeypatch.setenv("REFINE_CACHE_DIR", str(tmp_path / "cache"))

    config = build_run_config(env=EnvironmentSettings())

    assert config.endpoint.base_url == "http://env:1/v1"
    assert config.endpoint.model == "env-model"
    assert config.template_dirs == [tmp_path / "templates"]
    assert config.cache_dir == tmp_path / "cache"
    assert config.steps == 3  # untouched fields keep their defaults


def test_refine_base_url_wins_over_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai:1/v1")
    monkeypatch.setenv("REFINE_BASE_URL", "http://refine:1/v1")
    assert build_run_config(env=EnvironmentSettings()).endpoint.base_url == "http://refine:1/v1"


def test_precedence_cli_over_file_over_env_over_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:1/v1")
    monkeypatch.setenv("REFINE_MODEL", "env-model")
    monkeypatch.setenv("REFINE_TEMPLATE_DIR", str(tmp_path / "env-templates"))
    path = _toml(
        tmp_path,
        """
steps = 5
chunk_size = 10
[endpoint]
model = "file-model"
temperature = 0.1
[retry]
max_attempts = 2
""",
    )
    overrides = {
        "steps": 7,
        "task": None,  # an unset CLI flag masks nothing
        "chunk_size": None,
        "template_dirs": None,
        "endpoint": {"temperature": 0.3, "model": None, "base_url": None},
        "retry": {"max_attempts": None},
    }

    config = build_run_config(overrides, config_file=path, env=EnvironmentSettings())

    assert config.steps == 7  # CLI over file
    assert config.endpoint.temperature == 0.3  # CLI over file, nested
    assert config.chunk_size == 10  # file, not masked by a None flag
    assert config.endpoint.model == "file-model"  # file over environment
    assert config.retry.max_attempts == 2  # file, not masked by a nested None flag
    assert config.endpoint.base_url == "http://env:1/v1"  # environment under everything
    assert config.template_dirs == [tmp_path / "env-templates"]
    assert config.task == "generic" and config.endpoint.max_tokens == 512  # defaults
    assert config.retry.max_elapsed_s == 120.0  # a file's [retry] merges, it does not replace
    assert config.config_file == path


def test_config_file_named_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(tmp_path, 'task = "summarize"\n')
    monkeypatch.setenv("REFINE_CONFIG", str(path))
    config = build_run_config(env=EnvironmentSettings())
    assert config.task == "summarize" and config.config_file == path


@pytest.mark.parametrize(
    ("text", "field", "what"),
    [
        ("[endpoint]\ntemprature = 0.5\n", "endpoint.temprature", "Extra inputs"),
        ("stepz = 3\n", "stepz", "Extra inputs"),
        ("steps = 0\n", "steps", "greater than or equal to 1"),
        ("[endpoint]\ntemperature = 9\n", "endpoint.temperature", "less than or equal to 2"),
        ('[retry]\nmax_attempts = "many"\n', "retry.max_attempts", "integer"),
    ],
)
def test_bad_config_file_names_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, what: str
) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        build_run_config(config_file=path, env=EnvironmentSettings())
    message = str(info.value)
    assert str(path) in message
    assert f"  {field}: " in message and what in message


def test_every_bad_field_is_reported_at_once(tmp_path: Path) -> None:
    path = _toml(tmp_path, "steps = 0\nchunk_size = 0\n[endpoint]\ntop_p = 2\n")
    with pytest.raises(ConfigError) as info:
        build_run_config(config_file=path, env=EnvironmentSettings())
    for field in ("steps", "chunk_size", "endpoint.top_p"):
        assert f"  {field}: " in str(info.value)


def test_bad_cli_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"  concurrency: .*greater than or equal to 1"):
        build_run_config({"concurrency": 0}, env=EnvironmentSettings())


def test_endpoint_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'endpoint = "http://localhost:8000/v1"\n')
    with pytest.raises(ConfigError) as info:
        build_run_config(config_file=path, env=EnvironmentSettings())
    assert str(path) in str(info.value) and "  endpoint: " in str(info.value)
    assert resolve_api_key(path, env=EnvironmentSettings()) is None


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "steps = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        build_run_config(config_file=path, env=EnvironmentSettings())
    assert str(path) in str(info.value)


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        build_run_config(config_file=path, env=EnvironmentSettings())
    assert str(path) in str(info.value)


# -- the API key -----------------------------------------------------------------------------


def test_api_key_from_file_first_then_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with_key = _toml(tmp_path, '[endpoint]\napi_key = "sk-file"\n', "with.toml")
    without_key = _toml(tmp_path, '[endpoint]\nmodel = "m"\n', "without.toml")

    assert resolve_api_key(without_key, env=EnvironmentSettings()) is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    env = EnvironmentSettings()

    from_file = resolve_api_key(with_key, env=env)
    assert from_file is not None and from_file.get_secret_value() == "sk-file"
    from_env = resolve_api_key(without_key, env=env)
    assert from_env is not None and from_env.get_secret_value() == "sk-env"
    no_file = resolve_api_key(None, env=env)
    assert no_file is not None and no_file.get_secret_value() == "sk-env"


def test_refine_api_key_wins_over_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("REFINE_API_KEY", "sk-refine")
    key = resolve_api_key(env=EnvironmentSettings())
    assert key is not None and key.get_secret_value() == "sk-refine"


def test_api_key_never_reaches_the_run_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret")
    path = _toml(tmp_path, '[endpoint]\nmodel = "m"\napi_key = "sk-file-secret"\n')

    env = EnvironmentSettings()
    config = build_run_config(config_file=path, env=env)

    dumped = config.model_dump_json()
    assert "sk-file-secret" not in dumped and "sk-env-secret" not in dumped
    assert '"api_key"' not in dumped
    assert "sk-env-secret" not in repr(env) and "sk-env-secret" not in str(env.model_dump())
    key = resolve_api_key(path, env=env)
    assert key is not None and key.get_secret_value() == "sk-file-secret"


# -- paths -----------------------------------------------------------------------------------


def test_tilde_is_expanded_wherever_a_path_comes_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("REFINE_CACHE_DIR", "~/env-cache")
    monkeypatch.setenv("REFINE_TEMPLATE_DIR", "~/env-templates")
    from_env = build_run_config(env=EnvironmentSettings())
    assert from_env.cache_dir == home / "env-cache"
    assert from_env.template_dirs == [home / "env-templates"]

    path = _toml(
        tmp_path,
        'cache_dir = "~/file-cache"\ntemplate_dirs = ["~/file-templates"]\n'
        'examples_path = "~/file-examples.jsonl"\n',
    )
    from_file = build_run_config(config_file=path, env=EnvironmentSettings())
    assert from_file.cache_dir == home / "file-cache"
    assert from_file.template_dirs == [home / "file-templates"]
    assert from_file.examples_path == home / "file-examples.jsonl"

    overrides = {
        "cache_dir": Path("~/cli-cache"),
        "template_dirs": [Path("~/cli-templates")],
        "examples_path": Path("~/cli-examples.jsonl"),
    }
    from_cli = build_run_config(overrides, env=EnvironmentSettings())
    assert from_cli.cache_dir == home / "cli-cache"
    assert from_cli.template_dirs == [home / "cli-templates"]
    assert from_cli.examples_path == home / "cli-examples.jsonl"


def test_relative_paths_in_the_file_are_relative_to_its_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = tmp_path / "abs-templates"
    path = _toml(
        folder,
        f'cache_dir = "cache"\ntemplate_dirs = ["templates", "{absolute.as_posix()}"]\n'
        'examples_path = "../examples.jsonl"\n',
    )

    config = build_run_config(config_file=path, env=EnvironmentSettings())

    assert config.cache_dir == folder / "cache"
    assert config.template_dirs == [folder / "templates", absolute]
    assert config.examples_path == folder / "../examples.jsonl"


def test_relative_paths_from_flags_and_environment_stay_relative(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REFINE_CACHE_DIR", "env-cache")
    path = _toml(tmp_path, 'task = "generic"\n')
    overrides = {"template_dirs": [Path("cli-templates")], "examples_path": Path("ex.jsonl")}

    config = build_run_config(overrides, config_file=path, env=EnvironmentSettings())

    assert config.cache_dir == Path("env-cache")
    assert config.template_dirs == [Path("cli-templates")]
    assert config.examples_path == Path("ex.jsonl")


# -- which layer an error came from ----------------------------------------------------------


def _sections(message: str) -> dict[str, list[str]]:
    """The fields listed under each ``<layer>: invalid configuration`` heading."""
    sections: dict[str, list[str]] = {}
    fields: list[str] = []
    for line in message.splitlines():
        if line.startswith("  "):
            fields.append(line.strip().split(":")[0])
        else:
            fields = sections.setdefault(line.removesuffix(": invalid configuration"), [])
    return sections


def test_bad_flag_without_a_config_file_names_the_command_line() -> None:
    with pytest.raises(ConfigError) as info:
        build_run_config({"steps": 0}, env=EnvironmentSettings())
    assert _sections(str(info.value)) == {"command line": ["steps"]}


def test_each_bad_field_names_the_layer_that_set_it(tmp_path: Path) -> None:
    path = _toml(tmp_path, "steps = 0\nchunk_size = 0\n[endpoint]\ntemperature = 9\n")
    overrides = {"concurrency": 0, "chunk_size": 5, "endpoint": {"model": "m", "top_p": 2}}

    with pytest.raises(ConfigError) as info:
        build_run_config(overrides, config_file=path, env=EnvironmentSettings())

    assert _sections(str(info.value)) == {
        str(path): ["steps", "endpoint.temperature"],  # chunk_size was fixed by the flag
        "command line": ["concurrency", "endpoint.top_p"],
    }


# -- the endpoint ----------------------------------------------------------------------------


def test_extra_body_must_be_json(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[endpoint.extra_body]\nwhen = 1979-05-27T07:32:00Z\n")
    with pytest.raises(ConfigError) as info:
        build_run_config(config_file=path, env=EnvironmentSettings())
    message = str(info.value)
    assert str(path) in message
    assert "  endpoint.extra_body: " in message and "not JSON serializable" in message


def test_extra_body_that_is_json_is_kept(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[endpoint.extra_body.chat_template_kwargs]\nenable_thinking = false\n")
    config = build_run_config(config_file=path, env=EnvironmentSettings())
    assert config.endpoint.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}


def test_require_target_names_every_way_to_set_it() -> None:
    with pytest.raises(ConfigError) as no_url:
        EndpointConfig(model="m").require_target()
    assert str(no_url.value) == (
        "no endpoint: pass --base-url, set OPENAI_BASE_URL, "
        "or set [endpoint] base_url in the config file"
    )
    with pytest.raises(ConfigError) as no_model:
        EndpointConfig(base_url="http://localhost:1/v1").require_target()
    assert str(no_model.value) == (
        "no model: pass --model, set REFINE_MODEL, or set [endpoint] model in the config file"
    )


def test_the_prefect_server_address_is_read_with_the_other_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert EnvironmentSettings().prefect_api_url is None
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert EnvironmentSettings().prefect_api_url == "http://127.0.0.1:4200/api"


@pytest.mark.parametrize("api_url", [None, ""])
def test_serve_and_deploy_refuse_to_start_without_a_prefect_server(
    tmp_path: Path, api_url: str | None
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": "a", "text": "x"}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REFINE_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile with a server in it
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    for command in ("serve", "deploy"):
        result = run_refine([command, str(data)], env, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "no Prefect server: start one with `refine server`" in result.stderr
