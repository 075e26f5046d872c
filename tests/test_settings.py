"""Settings: CLI overrides > config file > environment > defaults, and the API key kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import (
    EnvironmentSettings,
    RetryConfig,
    RunConfig,
    build_run_config,
    resolve_api_key,
)
from refine.errors import ConfigError

ENV_VARS = (
    "REFINE_API_KEY",
    "OPENAI_API_KEY",
    "REFINE_BASE_URL",
    "OPENAI_BASE_URL",
    "REFINE_MODEL",
    "REFINE_TEMPLATE_DIR",
    "REFINE_CACHE_DIR",
    "REFINE_CONFIG",
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
