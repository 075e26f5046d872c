"""What happens to what comes out of the model: pure functions, no Prefect and no network.

Cleaners turn a raw answer into the draft the next step sees (strip fences, extract code,
truncate); filters reject a draft instead (:class:`DraftRejected`). Validators list a draft's
problems, which the next step's ``fix`` prompt shows; rewards score a draft; the sandbox runs
generated code against its tests. Each is a plain typed callable; the registries only exist so
configuration can name them.
"""

from postprocess.chain import CleanerChain
from postprocess.cleaner_registry import (
    CleanerFactory,
    CleanerRegistry,
    build_chain,
    default_cleaners,
)
from postprocess.cleaners import (
    Cleaner,
    extract_code_block,
    normalize_whitespace,
    strip,
    strip_code_fences,
    truncate_chars,
)
from postprocess.filters import DraftRejected
from postprocess.reward_registry import (
    NamedReward,
    RewardRegistry,
    build_rewards,
    default_rewards,
)
from postprocess.rewards import Reward, RewardDraft, RewardUnavailable, parse_judge_score
from postprocess.sandbox.checks import SandboxTests, test_problems
from postprocess.sandbox.run import (
    InvalidTests,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    check_sandbox,
    parse_tests,
    run_code_tests,
)
from postprocess.validator_registry import (
    NamedValidator,
    ValidatorCrashed,
    ValidatorRegistry,
    build_validators,
    default_validators,
    run_validators,
)
from postprocess.validators import ValidationResult, Validator

__all__ = [
    "Cleaner",
    "CleanerChain",
    "CleanerFactory",
    "CleanerRegistry",
    "DraftRejected",
    "InvalidTests",
    "NamedReward",
    "NamedValidator",
    "Reward",
    "RewardDraft",
    "RewardRegistry",
    "RewardUnavailable",
    "SandboxLimits",
    "SandboxResult",
    "SandboxTests",
    "SandboxUnavailable",
    "ValidationResult",
    "Validator",
    "ValidatorCrashed",
    "ValidatorRegistry",
    "build_chain",
    "build_rewards",
    "build_validators",
    "check_sandbox",
    "default_cleaners",
    "default_rewards",
    "default_validators",
    "extract_code_block",
    "normalize_whitespace",
    "parse_judge_score",
    "parse_tests",
    "run_code_tests",
    "run_validators",
    "strip",
    "strip_code_fences",
    "test_problems",
    "truncate_chars",
]
