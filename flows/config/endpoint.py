"""Where and how to call the model: the endpoint and retry sections of the configuration.

Split from :mod:`flows.config.run` (which re-exports both) so each module reads as one concept;
nothing here may hold a secret, since the run's config becomes Prefect flow parameters.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from refine.errors import ConfigError

__all__ = ["RATE_LIMIT_NAME", "EndpointConfig", "RetryConfig"]

RATE_LIMIT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@+=,-]*$"
"""What a rate limit name may hold: Prefect refuses ``/ % & < >`` in a limit's name, and the
name travels in a URL path of its API, so nothing that needs quoting there either."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointConfig(_Strict):
    """Where and how to call the model; everything here may appear in logs (no secret)."""

    base_url: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=0.7, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=512, gt=0)
    seed: int | None = None
    stop: list[str] | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)
    global_limit: str | None = Field(
        default=None,
        description=(
            "a Prefect global concurrency limit every request holds a slot of, across all "
            "workers (create it: prefect gcl create NAME --limit N); two API calls a request"
        ),
    )
    rpm: int | None = Field(
        default=None,
        gt=0,
        description=(
            "requests per minute to this endpoint, for every process that shares the rate "
            "limit (see rate_limit_name); each HTTP attempt counts, retries too; None: unlimited"
        ),
    )
    tpm: int | None = Field(
        default=None,
        gt=0,
        description=(
            "tokens per minute (prompt + completion) to this endpoint, shared like rpm; a "
            "request counts its estimated prompt plus max_tokens, corrected by its usage"
        ),
    )
    rate_limit_name: str | None = Field(
        default=None,
        pattern=RATE_LIMIT_NAME,
        max_length=200,
        description=(
            "the name of the shared rpm/tpm limit: runs naming the same one share it "
            "(default: the endpoint's address and the model, never the key)"
        ),
    )
    supports_n: bool = Field(
        default=False,
        description=(
            "the endpoint honours `n` (OpenAI, vLLM): a best-of-N step asks for its N "
            "candidates in one request; else N requests with distinct seeds"
        ),
    )
    send_api_key: bool = Field(
        default=True, description="False for the embedded local model: no key leaves the process"
    )
    embedded: bool = Field(
        default=False,
        description=(
            "set by refine run when it serves the embedded local model for the run (a new port "
            "each run, one endpoint to the request cache); not a setting"
        ),
    )
    api_key_secret: str | None = Field(
        default=None,
        description="name of a Prefect Secret block with the API key (flows.llm.api_key)",
    )

    @field_validator("extra_body")
    @classmethod
    def _json_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Reject what a request body cannot carry (a TOML date, NaN) before the first call."""
        try:
            json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be plain JSON: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tpm_holds_one_request(self) -> EndpointConfig:
        """Refuse a tpm below max_tokens: every request counts its max_tokens against tpm, so
        none would ever fit in a minute's tokens (the run would overrun the limit, then stall)."""
        if self.tpm is not None and self.max_tokens is not None and self.tpm < self.max_tokens:
            raise ValueError(
                f"tpm = {self.tpm} is below max_tokens = {self.max_tokens}: each request "
                "counts its max_tokens (plus its prompt) against tpm, so not one fits in a "
                f"minute; raise tpm to at least {self.max_tokens} or lower max_tokens"
            )
        return self

    def require_target(self) -> None:
        """Raise ConfigError unless both where to send requests and which model are known."""
        if not self.base_url:
            raise ConfigError(
                "no endpoint: pass --base-url, set OPENAI_BASE_URL, "
                "or set [endpoint] base_url in the config file"
            )
        if not self.model:
            raise ConfigError(
                "no model: pass --model, set REFINE_MODEL, "
                "or set [endpoint] model in the config file"
            )

    def sampling(self) -> dict[str, Any]:
        """The request fields that change the answer (part of every cache key)."""
        fields = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": self.stop,
        }
        return {k: v for k, v in fields.items() if v is not None}


class RetryConfig(_Strict):
    """The transport retry budget; see the README for the resulting maximum calls per item."""

    max_attempts: int = Field(default=4, ge=1, le=20)
    max_elapsed_s: float = Field(default=120.0, gt=0)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=20.0, ge=0)
    retry_after_max_s: float = Field(default=60.0, ge=0)
    call_deadline_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
