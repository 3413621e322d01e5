"""The runner protocol's messages refuse what neither side should send."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from opencodehub.runner.jobspec import JobSpec
from opencodehub.runner.protocol import (
    MAX_LOG_BATCH,
    JobAssignment,
    JobRequest,
    LogBatch,
    RegisterRequest,
    StepUpdate,
)


def test_register_names_are_plain_words() -> None:
    assert RegisterRequest(token="t", name="build-01.local", labels=["a"]).name == "build-01.local"
    for name in ("", "a b", "x;rm", "n\n", "é", "x" * 256):
        with pytest.raises(ValidationError):
            RegisterRequest(token="t", name=name)


def test_log_batches_are_bounded() -> None:
    line = {"step": 0, "text": "x"}
    assert len(LogBatch(start=0, lines=[line] * MAX_LOG_BATCH).lines) == MAX_LOG_BATCH
    for bad in (
        {"start": -1, "lines": [line]},
        {"start": 0, "lines": [line] * (MAX_LOG_BATCH + 1)},
        {"start": 0, "lines": [{"step": -2, "text": "x"}]},
        {"start": 0, "lines": [{"text": "x" * (64 * 1024 + 1)}]},
    ):
        with pytest.raises(ValidationError):
            LogBatch.model_validate(bad)


def test_polls_steps_and_assignments_round_trip() -> None:
    with pytest.raises(ValidationError):
        JobRequest(wait_seconds=600)
    with pytest.raises(ValidationError):
        StepUpdate.model_validate({"index": 0, "name": "s", "status": "exploded"})
    assignment = JobAssignment(
        spec=JobSpec(job_id=1, run_id=2, job_key="build"),
        labels=["ubuntu-latest"],
        heartbeat_interval=5,
        lease_seconds=60,
    )
    assert JobAssignment.model_validate_json(assignment.model_dump_json()) == assignment
