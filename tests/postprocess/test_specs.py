"""One spec grammar for cleaners, validators and rewards: names, ``name:ARG``, tables and user
imports read the same way by all three registries, and a TOML table reaches a real run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.batch import refine_batch
from flows.config.run import build_run_config
from postprocess.cleaner_registry import build_chain, default_cleaners
from postprocess.reward_registry import build_rewards, default_rewards
from postprocess.rewards import RewardDraft
from postprocess.specs import Argument, FactoryRegistry
from postprocess.validator_registry import build_validators, default_validators
from postprocess.validators import regex_must
from refine.errors import ConfigError
from tests.batch_helpers import read_records, write_rows
from tests.fake_openai import FakeOpenAI, Reply

NOTE = "Note: draft two\nThe bridge opens in May, after repairs.\nSource: council"


def shout(text: str) -> str:
    """A user cleaner, imported as ``<this module>:shout``."""
    return text.upper()


@pytest.mark.parametrize(
    ("table", "shorthand"),
    [
        ({"name": "truncate_chars", "limit": 20}, "truncate_chars:20"),
        ({"name": "truncate_sentences", "count": 1}, "truncate_sentences:1"),
        ({"name": "truncate_tokens", "count": 3}, "truncate_tokens:3"),
        ({"name": "drop_lines", "pattern": "^(Note|Source):"}, "drop_lines:^(Note|Source):"),
    ],
)
def test_cleaners_take_tables_as_well_as_the_shorthand(
    table: dict[str, Any], shorthand: str
) -> None:
    by_table, by_shorthand = build_chain([table]), build_chain([shorthand])
    assert by_table(NOTE) == by_shorthand(NOTE) != NOTE
    shown = ", ".join(f"{k}={v!r}" for k, v in table.items() if k != "name")
    assert by_table.specs == (f"{table['name']}({shown})",)  # how errors name it
    assert by_shorthand.specs == (shorthand,)


def test_filters_take_tables_and_user_cleaners_take_a_table_name() -> None:
    chain = build_chain(
        [{"name": "reject_longer", "limit": 500}, {"name": f"{__name__}:shout"}, "strip"]
    )
    assert chain(" quiet ") == "QUIET"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "truncate_chars", "max_chars": 500},
            "cleaner 'truncate_chars': unknown parameter 'max_chars'; missing parameter 'limit'; "
            "accepted parameters: limit",
        ),
        (
            {"name": "truncate_chars", "limit": "lots"},
            "cleaner 'truncate_chars': the argument must be an integer, got 'lots'",
        ),
        (
            {"name": "truncate_chars", "limit": 0},
            "cleaner 'truncate_chars': truncate_chars needs a positive integer limit, got 0",
        ),
        (
            {"name": "drop_lines", "pattern": 3},
            "cleaner 'drop_lines': the pattern must be a string, got 3",
        ),
        (
            {"name": "strip", "chars": " "},
            "cleaner 'strip': unknown parameter 'chars'; accepted parameters: none",
        ),
        (
            {"name": f"{__name__}:shout", "loud": True},
            f"cleaner '{__name__}:shout' is a user cleaner and takes no parameters, got loud; "
            "register a factory to configure one",
        ),
        ({"limit": 3}, "a cleaner table needs a 'name' key naming the cleaner, got {'limit': 3}"),
        (3, "a cleaner is a name or a table with a 'name' key, got 3"),
    ],
)
def test_bad_cleaner_tables_fail_when_the_chain_is_built(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_chain([spec])
    assert str(caught.value) == message


def test_validators_and_rewards_say_where_parameters_go() -> None:
    with pytest.raises(ConfigError) as caught:
        build_validators(["length:150"])
    assert str(caught.value) == (
        "validator 'length:150': length takes no argument; its parameters go in a table: "
        '{ name = "length", ... }'
    )
    with pytest.raises(ConfigError, match="reward 'chrf:2': chrf takes no argument; its param"):
        build_rewards(["chrf:2"])


def test_a_validator_may_declare_the_shorthand_too() -> None:
    registry = default_validators()
    registry.register("starts_with", regex_must, Argument("a pattern", "^def ", str))
    (validator,) = build_validators(["starts_with:^def "], registry=registry)
    assert validator("def f(): pass", {}).ok
    problem = "the draft does not match the required pattern '^def '"
    assert validator("print(1)", {}).problems == (problem,)
    (same,) = build_validators([{"name": "starts_with", "pattern": "^def "}], registry=registry)
    assert same("print(1)", {}).problems == validator("print(1)", {}).problems


def test_name_colon_argument_and_module_colon_function_are_told_apart() -> None:
    registry = default_cleaners()
    registry.register("tests", lambda: shout)  # a registered name that is also a package
    assert registry.resolve(f"{__name__}:shout")("a") == "A"  # dotted: an import
    with pytest.raises(ConfigError, match="'tests:test_specs': tests takes no argument"):
        registry.resolve("tests:test_specs")  # the registered name wins
    with pytest.raises(ConfigError, match="unknown cleaner 'truncat'; known cleaners: drop_lines"):
        registry.resolve("truncat:5")  # neither a name nor a module path
    with pytest.raises(ConfigError, match="cannot import 'no_such_pkg'"):
        registry.resolve({"name": "no_such_pkg:fn"})


@pytest.mark.parametrize(
    ("registry", "kind"),
    [
        (default_cleaners(), "cleaner"),
        (default_validators(), "validator"),
        (default_rewards(), "reward"),
    ],
)
def test_every_registry_words_its_errors_the_same_way(
    registry: FactoryRegistry[Any], kind: str
) -> None:
    with pytest.raises(ConfigError) as unknown:
        registry.parse("nope")
    assert str(unknown.value) == (
        f"unknown {kind} 'nope'; known {kind}s: {', '.join(registry.names())}; "
        f"a user {kind} is named as 'package.module:function'"
    )
    with pytest.raises(ConfigError, match=f"^{kind} names must be identifiers, got 'a.b'$"):
        registry.register("a.b", lambda: shout)
    with pytest.raises(ConfigError, match=f"^a {kind} table needs a 'name' key naming the {kind}"):
        registry.parse({"x": 1})
    copied = registry.copy()
    copied.register("extra", lambda: shout)
    assert "extra" in copied and "extra" not in registry


def test_rewards_in_tables_still_build() -> None:
    (reward,) = build_rewards([{"name": "chrf", "word_order": 2}])
    assert reward.label == "chrf(word_order=2)"
    assert reward(RewardDraft("a cat"), {"reference": "a cat"}) == pytest.approx(1.0)


@pytest.mark.usefixtures("prefect_api")
async def test_a_toml_table_in_postprocess_cleans_a_real_run(
    fake_server: FakeOpenAI, tmp_path: Path
) -> None:
    data = write_rows(tmp_path / "data.jsonl", [{"id": "b", "input": "When does it open?"}])
    fake_server.script([Reply(content=NOTE)])
    config_file = tmp_path / "refine.toml"
    config_file.write_text(
        'task = "generic"\nsteps = 1\n'
        'postprocess = [{ name = "drop_lines", pattern = "^(Note|Source):" }, '
        '"strip", { name = "truncate_sentences", count = 1 }]\n'
        f'cache_dir = "cache"\n[endpoint]\nbase_url = "{fake_server.base_url}"\n'
        'model = "fake-model"\n',
        encoding="utf-8",
    )
    config = build_run_config(config_file=config_file)
    assert config.postprocess == [
        {"name": "drop_lines", "pattern": "^(Note|Source):"},
        "strip",
        {"name": "truncate_sentences", "count": 1},
    ]
    await refine_batch(data, tmp_path / "out.jsonl", config)
    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["status"] == "ok"
    assert record["output"] == "The bridge opens in May, after repairs."
