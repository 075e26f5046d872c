"""Errors survive pickling: a shard's failure on a Dask worker reaches the parent intact."""

from __future__ import annotations

import pickle
from pathlib import Path

from refine.errors import (
    ConfigError,
    EndpointError,
    FatalEndpointError,
    FieldProblem,
    InputError,
    MissingFieldsError,
)


def test_every_error_round_trips_with_its_message_and_fields() -> None:
    problems = [FieldProblem(3, "text", "missing")]
    errors = [
        ConfigError("bad config"),
        InputError(Path("d.jsonl"), problems, hint="try --skip-invalid"),
        MissingFieldsError(Path("d.jsonl"), problems),
        EndpointError("no answer", status=503, url="http://x/v1"),
        FatalEndpointError("refused", status=401, url="http://x/v1"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.exit_code == error.exit_code
    input_copy = pickle.loads(pickle.dumps(errors[1]))
    assert input_copy.problems == problems and input_copy.hint == "try --skip-invalid"
    endpoint_copy = pickle.loads(pickle.dumps(errors[4]))
    assert (endpoint_copy.status, endpoint_copy.url) == (401, "http://x/v1")
