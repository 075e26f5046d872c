"""The pieces of the rate limits that need no server: the provider's headers, the token
estimate and its calibration, the bucket a per-minute limit becomes, and the limit's name."""

from __future__ import annotations

import pytest

from flows.config.run import EndpointConfig
from flows.llm.rate_buckets import Bucket
from flows.llm.rate_estimate import TokenEstimator
from flows.llm.rate_headers import RateHeaders, parse_duration
from flows.llm.rate_limit import rate_limit_base


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1m30.951s", 90.951),
        ("2h1m", 7260.0),
        ("0s", 0.0),
        ("250us", 0.00025),
        ("12", 12.0),  # Azure: plain seconds
        ("0.5", 0.5),
        ("", None),
        ("-1", None),  # Azure's "not known"
        ("soon", None),
        ("5 s", None),
        ("1s2", None),
        ("Tue, 03 Nov 2026 10:00:00 GMT", None),
        ("inf", None),
    ],
)
def test_reset_durations_read_as_openai_and_azure_send_them(
    text: str, seconds: float | None
) -> None:
    parsed = parse_duration(text)
    assert parsed == pytest.approx(seconds) if seconds is not None else parsed is None


def _headers(**fields: str) -> dict[str, str]:
    return {f"x-ratelimit-{name.replace('_', '-')}": value for name, value in fields.items()}


def test_a_spent_request_limit_pauses_until_its_reset() -> None:
    headers = RateHeaders.read(
        _headers(remaining_requests="0", reset_requests="1.5s", remaining_tokens="9000")
    )
    assert headers.pause(next_tokens=100) == (1.5, "x-ratelimit-remaining-requests: 0")


def test_too_few_tokens_left_for_a_request_like_the_last_pauses_until_the_token_reset() -> None:
    headers = RateHeaders.read(
        _headers(remaining_requests="40", remaining_tokens="80", reset_tokens="6m0s")
    )
    assert headers.pause(next_tokens=100) == (360.0, "x-ratelimit-remaining-tokens: 80")
    assert headers.pause(next_tokens=80) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _headers(remaining_requests="3", reset_requests="1s"),
        _headers(remaining_requests="0"),  # spent, but no reset: the 429 will say
        _headers(remaining_tokens="-1", reset_tokens="0"),  # Azure's unknowns
        _headers(remaining_requests="none", reset_requests="1s"),
    ],
)
def test_headers_with_room_or_unknowns_pause_nothing(headers: dict[str, str]) -> None:
    assert RateHeaders.read(headers).pause(next_tokens=100) is None


def _body(content: str, **fields: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": content}], **fields}


def test_an_estimate_is_the_prompt_at_four_characters_a_token_plus_max_tokens() -> None:
    estimator = TokenEstimator()
    assert estimator.estimate(_body("x" * 400, max_tokens=50)) == (150, 400)
    assert estimator.estimate(_body("x" * 400, max_tokens=50, n=3)) == (250, 400)
    parts = [{"type": "text", "text": "x" * 40}, {"type": "image_url"}]
    assert estimator.estimate({"messages": [{"content": parts}], "max_completion_tokens": 5}) == (
        15,
        40,
    )


def test_the_estimate_calibrates_to_the_reported_prompt_tokens() -> None:
    estimator = TokenEstimator()
    estimator.observe(prompt_chars=600, prompt_tokens=100, completion_tokens=30)
    estimator.observe(prompt_chars=1200, prompt_tokens=200, completion_tokens=50)
    assert estimator.chars_per_token == 6.0
    assert estimator.estimate(_body("x" * 600, max_tokens=10)) == (110, 600)
    # no max_tokens: the mean completion seen so far stands in for it
    assert estimator.estimate(_body("x" * 600)) == (140, 600)


def test_a_wild_calibration_is_bounded() -> None:
    estimator = TokenEstimator()
    estimator.observe(prompt_chars=10_000, prompt_tokens=1, completion_tokens=0)
    assert estimator.chars_per_token == TokenEstimator.MAX_RATIO


@pytest.mark.parametrize(
    ("per_minute", "capacity"), [(1, 1), (2, 1), (10, 1), (30, 3), (3000, 300), (90_000, 9000)]
)
def test_a_bucket_lets_at_most_the_limit_through_a_minute(per_minute: int, capacity: int) -> None:
    bucket = Bucket.per_minute_limit("b", per_minute)
    assert bucket.capacity == capacity
    # whole units taken within any 60 s stay below capacity + 60 s of decay = limit + 1
    assert bucket.capacity + 60 * bucket.decay_per_s == pytest.approx(per_minute + 1)
    assert bucket.decay_per_s > 0


def test_the_default_limit_name_is_the_address_and_model_never_a_secret() -> None:
    endpoint = EndpointConfig(
        base_url="HTTPS://user:sk-secret@API.example.com/v1/?api-key=sk-secret#frag",
        model="meta-llama/Llama-3.1 8B",
    )
    assert rate_limit_base(endpoint) == "meta-llama-Llama-3.1-8B@api.example.com:443-v1"
    named = endpoint.model_copy(update={"rate_limit_name": "team-openai"})
    assert rate_limit_base(named) == "team-openai"


@pytest.mark.parametrize("name", ["has/slash", "50%", "a b", "", "-dash-first"])
def test_a_rate_limit_name_prefect_cannot_hold_is_refused_with_the_config(name: str) -> None:
    with pytest.raises(ValueError, match="rate_limit_name"):
        EndpointConfig(rate_limit_name=name)


def test_a_tpm_below_max_tokens_is_refused_at_config_time_naming_both_and_the_fix() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as refused:
        EndpointConfig(tpm=150, max_tokens=200)
    message = str(refused.value)
    assert "tpm = 150" in message and "max_tokens = 200" in message
    assert "raise tpm to at least 200 or lower max_tokens" in message
    assert EndpointConfig(tpm=200, max_tokens=200).tpm == 200  # one request a minute fits
    assert EndpointConfig(tpm=150, max_tokens=None).tpm == 150  # no max_tokens: nothing known


def test_the_run_s_configuration_refuses_it_as_a_config_error() -> None:
    from flows.config.run import build_run_config
    from refine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"endpoint: tpm = 150 is below max_tokens = 200"):
        build_run_config({"endpoint": {"tpm": 150, "max_tokens": 200}})


def test_numbers_in_the_rate_limit_lines_read_plainly() -> None:
    from flows.llm.rate_buckets import describe, number

    rpm20, tpm = Bucket.per_minute_limit("r", 20), Bucket.per_minute_limit("t", 12_000)
    assert describe(rpm20.capacity, rpm20.decay_per_s) == "20 per minute (holds 2, drains 0.317/s)"
    assert (
        describe(tpm.capacity, tpm.decay_per_s) == "12,000 per minute (holds 1,200, drains 180/s)"
    )
    assert [number(v) for v in (1.5e7, 120.4, 2.5, 0.0001)] == [
        "15,000,000",
        "120",
        "2.5",
        "0.0001",
    ]
