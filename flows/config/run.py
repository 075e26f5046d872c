"""Configuration: the run's pydantic models, and the one place that reads the environment.

Precedence, highest first: CLI flags, the config file (TOML), environment variables, defaults.
The API key is never part of :class:`RunConfig` (which becomes Prefect flow parameters); it is
resolved separately by :func:`resolve_api_key` from the config file or the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.config.batch import BatchConfig, BatchFallback, RunMode
from flows.config.endpoint import EndpointConfig, RetryConfig
from flows.config.local import LocalModelConfig, is_model_path
from flows.config.loop import LoopFields, Spec
from flows.config.text import header_safe_key, refuse_invalid_text
from flows.data.input_config import InputConfig
from refine.errors import ConfigError

__all__ = [
    "EndpointConfig",
    "EnvironmentSettings",
    "RetryConfig",
    "RunConfig",
    "build_run_config",
    "default_cache_dir",
    "resolve_api_key",
]


def default_cache_dir() -> Path:
    """The per-user cache folder (e.g. ``~/.cache/prefect-refine/requests`` on Linux)."""
    return Path(platformdirs.user_cache_dir("prefect-refine")) / "requests"


def _expanduser(path: str | Path) -> Path:
    # os.path's version leaves an unknown ``~user`` as written, where Path.expanduser raises.
    return Path(os.path.expanduser(path))


class RunConfig(LoopFields):
    """Everything one batch run needs, safe to pass as Prefect flow parameters.

    The refinement loop's fields (validators, rewards, critique, stop, select, sandbox) are
    declared in :class:`~flows.config.loop.LoopFields`.
    """

    task: str = "generic"
    steps: int = Field(default=3, ge=1, le=50)
    history: int = Field(default=2, ge=1, description="drafts (and error lists) a step sees")
    chunk_size: int | None = Field(
        default=None, ge=1, description="items per Prefect task; None = the concurrency, 10 to 100"
    )
    chunks_in_flight: int | None = Field(
        default=None, ge=1, description="chunks refined at once; None = enough to fill concurrency"
    )
    concurrency: int = Field(default=16, ge=1, description="requests in flight, whole run")
    template_dirs: list[Path] = Field(default_factory=list)
    examples_path: Path | None = None
    source_lang: str = "English"
    target_lang: str = "French"
    postprocess: list[Spec] | None = Field(
        default=None, description="cleaner specs; None = the task's default chain"
    )
    max_output_chars: int | None = Field(default=None, gt=0)
    max_prompt_chars: int = Field(default=100_000, gt=0)
    skip_invalid: bool = Field(
        default=False, description="report bad input rows and run the rest (else: refuse all)"
    )
    retry_failed: bool = Field(
        default=False,
        description="run again the items whose latest output record is failed, appending "
        "their new records to the same output (the latest record of an id wins)",
    )
    mode: RunMode = Field(
        default="online",
        description="batch: each step's requests go through the endpoint's Batch API "
        "(step-major, about half the price, answers within the completion window)",
    )
    batch_fallback: BatchFallback = Field(
        default="resubmit",
        description="a request a batch did not answer: resubmit it in the next batch, or "
        "send it online",
    )
    batch: BatchConfig = Field(default_factory=BatchConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    use_cache: bool = True
    cache_dir: Path = Field(default_factory=default_cache_dir)
    config_file: Path | None = None
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    local_model: LocalModelConfig = Field(default_factory=LocalModelConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="after")
    def _sampling_needs_temperature(self) -> RunConfig:
        """Best-of-N draws N different answers only when sampling is random."""
        problem = sampling_problem(self)
        if problem is not None:
            raise SamplingConflict(problem)
        return self

    @model_validator(mode="after")
    def _batch_needs_a_batch_api(self) -> RunConfig:
        """Refuse ``mode = "batch"`` before anything starts when no endpoint can take it."""
        if self.mode == "batch" and (self.endpoint.embedded or not self.endpoint.base_url):
            raise ValueError(
                'mode = "batch" (--batch-api) needs an endpoint with a Batch API: pass '
                "--base-url (e.g. https://api.openai.com/v1); the embedded local model has none"
            )
        return self

    @field_validator("cache_dir", "template_dirs", "examples_path")
    @classmethod
    def _expand_home(cls, value: Path | list[Path] | None) -> Path | list[Path] | None:
        """``~`` is the home folder wherever a path came from (flag, file or environment)."""
        if isinstance(value, list):
            return [_expanduser(path) for path in value]
        return None if value is None else _expanduser(value)


class EnvironmentSettings(BaseSettings):
    """The environment variables prefect-refine reads; nothing else reads ``os.environ``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REFINE_API_KEY", "OPENAI_API_KEY")
    )
    base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REFINE_BASE_URL", "OPENAI_BASE_URL")
    )
    model: str | None = Field(default=None, validation_alias="REFINE_MODEL")
    template_dir: Path | None = Field(default=None, validation_alias="REFINE_TEMPLATE_DIR")
    cache_dir: Path | None = Field(default=None, validation_alias="REFINE_CACHE_DIR")
    config_file: Path | None = Field(default=None, validation_alias="REFINE_CONFIG")
    prefect_api_url: str | None = Field(default=None, validation_alias="PREFECT_API_URL")
    """The Prefect server that ``refine serve``/``deploy`` register with; Prefect reads it too."""
    server_idle_timeout_s: float | None = Field(
        default=None, ge=0, validation_alias="REFINE_SERVER_IDLE_TIMEOUT"
    )
    """Seconds the temporary Prefect server of ``refine run`` stays up, unused, for the next
    runs (0: it ends with its run; unset: flows.ops.warm_server's default)."""


class SamplingConflict(ValueError):
    """``samples`` draws several candidates at a step while the temperature is 0 or below."""


def sampling_problem(config: RunConfig) -> str | None:
    """Why ``samples`` cannot work with the endpoint's temperature, or None when it can."""
    temperature = config.endpoint.temperature
    if temperature is None or temperature > 0 or config.most_samples() < 2:
        return None
    step = next(t for t in range(1, config.steps + 2) if config.samples_at(t) > 1)
    return (
        f"samples draws {config.samples_at(step)} candidates at step {step}, which needs "
        f"random sampling, but temperature is {temperature:g} (every candidate would be the "
        "same answer): set temperature above 0 ([endpoint] temperature = 0.7, or "
        "--temperature 0.7), or samples = 1"
    )


def _read_config_file(path: Path) -> dict[str, Any]:
    """The TOML table of ``path``; raises ConfigError naming the file (and the line, where the
    text is at fault) for a missing, unreadable, non-UTF-8 or malformed file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")  # TOML is UTF-8 by definition (toml.io, "Spec")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}, line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_file_paths(values: dict[str, Any], folder: Path) -> None:
    """Make the file's relative paths relative to its folder, not to wherever refine runs."""

    def resolve(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the wrong type: validation names it
        path = _expanduser(value)
        return path if path.is_absolute() else folder / path

    for key in ("cache_dir", "examples_path"):
        if key in values:
            values[key] = resolve(values[key])
    if isinstance(values.get("template_dirs"), list):
        values["template_dirs"] = [resolve(value) for value in values["template_dirs"]]
    local = values.get("local_model")
    if isinstance(local, dict):
        if "model_path" in local and "model" not in local:  # the older name: always a path
            local["model"] = resolve(local.pop("model_path"))
        model = local.get("model")
        if isinstance(model, str) and is_model_path(model):  # a file, not a catalogue name
            local["model"] = resolve(model)


def _sets(layer: dict[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Whether ``layer`` set the value at ``loc``, or the list or table holding it."""
    node: Any = layer
    for part in loc:
        if not isinstance(node, dict):
            return True  # loc points inside a value this layer set whole
        if part not in node:
            return False
        node = node[part]
    return True


def _describe(exc: ValidationError, layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The bad fields, each listed under the layer (flags, file, environment) that set it."""
    by_source: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = err["loc"]
        source = next((name for name, layer in reversed(layers) if _sets(layer, loc)), "defaults")
        where = ".".join(str(part) for part in loc) or "(root)"
        message = err["msg"].removeprefix("Value error, ")  # pydantic's prefix says nothing
        by_source.setdefault(source, []).append(f"  {where}: {message}")
    return "\n".join(
        "\n".join([f"{source}: invalid configuration", *lines])
        for source, lines in by_source.items()
    )


def build_run_config(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    env: EnvironmentSettings | None = None,
) -> RunConfig:
    """Merge defaults, environment, config file and CLI overrides into a validated RunConfig.

    ``overrides`` uses RunConfig's shape (``{"steps": 3, "endpoint": {"model": "m"}}``); keys
    whose value is None are ignored, so unset CLI flags don't mask the file or environment.
    """
    env = env or EnvironmentSettings()
    config_file = config_file or env.config_file
    from_env: dict[str, Any] = {"endpoint": {}}
    if env.base_url:
        from_env["endpoint"]["base_url"] = env.base_url
    if env.model:
        from_env["endpoint"]["model"] = env.model
    if env.template_dir:
        from_env["template_dirs"] = [env.template_dir]
    if env.cache_dir:
        from_env["cache_dir"] = env.cache_dir
    layers = [("environment", from_env)]  # lowest precedence first
    if config_file is not None:
        from_file = _read_config_file(config_file)
        if isinstance(from_file.get("endpoint"), dict):  # not a table: validation names it
            from_file["endpoint"].pop("api_key", None)  # resolved by resolve_api_key only
        _resolve_file_paths(from_file, config_file.parent)
        layers.append((str(config_file), {**from_file, "config_file": config_file}))
    layers.append(("command line", _drop_none(overrides or {})))
    _latest_choice_wins(layers)
    merged: dict[str, Any] = {}
    for source, layer in layers:
        refuse_invalid_text(source, layer)
        merged = _merge(merged, layer)
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_sampling_described(exc, layers) or _describe(exc, layers)) from None


def _sampling_described(exc: ValidationError, layers: list[tuple[str, dict[str, Any]]]) -> str:
    """A :class:`SamplingConflict` (a check across two fields, so pydantic places it at the
    root), naming the layer each of the two values came from; "" for any other error."""
    conflict = next(
        (
            e["ctx"]["error"]
            for e in exc.errors()
            if isinstance(e.get("ctx", {}).get("error"), SamplingConflict)
        ),
        None,
    )
    if conflict is None:
        return ""

    def source(loc: tuple[str, ...]) -> str:
        return next((name for name, layer in reversed(layers) if _sets(layer, loc)), "defaults")

    return (
        f"invalid configuration: samples (from {source(('samples',))}) and "
        f"endpoint.temperature (from {source(('endpoint', 'temperature'))}): {conflict}"
    )


def _latest_choice_wins(layers: list[tuple[str, dict[str, Any]]]) -> None:
    """``[input] limit`` and ``sample`` are one choice: a layer that sets one of them (the
    command line's ``--limit`` over a config file's ``sample = 3``) drops the other from the
    layers below it, as any setting overrides the one below. Both in one layer stay, and are
    refused by :class:`flows.data.input_config.InputConfig`."""
    for index, (_, layer) in enumerate(layers):
        chosen = layer.get("input")
        if not isinstance(chosen, dict):
            continue
        for key, other in (("limit", "sample"), ("sample", "limit")):
            if key in chosen and other not in chosen:
                for _, lower in layers[:index]:
                    below = lower.get("input")
                    if isinstance(below, dict):
                        below.pop(other, None)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in values.items() if v is not None
    }


def resolve_api_key(
    config_file: Path | None = None, env: EnvironmentSettings | None = None
) -> SecretStr | None:
    """The API key from the config file's ``[endpoint] api_key``, else the environment."""
    env = env or EnvironmentSettings()
    config_file = config_file or env.config_file
    if config_file is not None:
        endpoint = _read_config_file(config_file).get("endpoint")
        key = endpoint.get("api_key") if isinstance(endpoint, dict) else None
        if key:
            return header_safe_key(str(key), f"{config_file}: [endpoint] api_key")
    if env.api_key is None:
        return None
    return header_safe_key(env.api_key.get_secret_value(), "REFINE_API_KEY or OPENAI_API_KEY")
