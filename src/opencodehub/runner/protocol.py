"""The runner protocol's messages, shared by the server (`actions/runner_api.py`) and the agent.

Every request after registration carries `Authorization: Bearer <runner secret>`. See
docs/runner-protocol.md for the exchange; nothing here imports the server.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from opencodehub.runner.jobspec import JobResult, JobSpec

PROTOCOL_VERSION = 1
PREFIX = "/-/runner/v1"
MAX_LOG_BATCH = 1000
MAX_LOG_LINE = 64 * 1024
MAX_STEP_UPDATES = 100

Level = Literal["notice", "warning", "error"]
StepStatus = Literal["in_progress", "completed"]
StepConclusion = Literal["success", "failure", "cancelled", "skipped"]


class RegisterRequest(BaseModel):
    token: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$")
    # Label names only (`ubuntu-latest`); which executor serves a label stays on the runner.
    labels: list[str] = Field(default_factory=list, max_length=64)
    version: str = Field(default="", max_length=64)


class RegisterResponse(BaseModel):
    id: int
    name: str
    labels: list[str]
    secret: str


class JobRequest(BaseModel):
    """A long poll: wait up to `wait_seconds` for a job matching the runner's labels."""

    wait_seconds: float = Field(default=20.0, ge=0, le=60)


class JobAssignment(BaseModel):
    spec: JobSpec
    # The job's `runs-on` labels, evaluated: the runner picks the executor of the first it has.
    labels: list[str] = Field(default_factory=list)
    heartbeat_interval: float
    # Refreshed by every call about the job; past this without one the reaper takes the job.
    lease_seconds: float


class Heartbeat(BaseModel):
    job_ids: list[int] = Field(default_factory=list, max_length=256)


class HeartbeatResponse(BaseModel):
    # Jobs the runner must stop: cancelled by a user, or no longer the runner's (reaped).
    cancel: list[int] = Field(default_factory=list)
    unknown: list[int] = Field(default_factory=list)


class StepUpdate(BaseModel):
    index: int = Field(ge=0, le=10_000)
    name: str = Field(max_length=512)
    status: StepStatus
    conclusion: StepConclusion | None = None
    outcome: StepConclusion | None = None


class LogLine(BaseModel):
    step: int | None = Field(default=None, ge=0, le=10_000)
    text: str = Field(max_length=MAX_LOG_LINE)


class LogBatch(BaseModel):
    """Lines `start`, `start + 1`, …; lines the server already has are ignored, so a batch is
    safely sent again after a timeout. `steps` are step states recorded after the lines, in
    order, in the same transaction: a step's start rides with the lines before it, and a step's
    end waits for the next batch instead of costing a round trip of its own."""

    start: int = Field(ge=0)
    lines: list[LogLine] = Field(max_length=MAX_LOG_BATCH)
    steps: list[StepUpdate] = Field(default_factory=list, max_length=MAX_STEP_UPDATES)


class LogAck(BaseModel):
    # The number of consecutive lines the server holds from index 0: the next index to send.
    next_index: int


class AnnotationIn(BaseModel):
    level: Level
    message: str = Field(max_length=64 * 1024)
    file: str = Field(default="", max_length=1024)
    line: int | None = Field(default=None, ge=0)


class JobCompletion(BaseModel):
    result: JobResult
    # The job's last log lines (and nothing else: `result.steps` holds the final step states),
    # stored before the job completes, so finishing a job costs one round trip.
    logs: LogBatch | None = None


class Released(BaseModel):
    requeued: bool
