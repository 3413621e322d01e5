"""Tables of Actions: workflows, runs, jobs, steps, logs, annotations, runners, secrets.

The database holds every state of a run; Redis (or the in-process queue) only carries dispatch
and live-log notifications, so losing it loses no state.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.core.time import utcnow
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin, str_enum
from opencodehub.repos.models import Repository


class RunStatus(enum.StrEnum):
    # `pending`: waiting for another run of its concurrency group to finish.
    PENDING = "pending"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class JobStatus(enum.StrEnum):
    # `waiting`: its `needs` are not done yet (or its run is pending).
    WAITING = "waiting"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class Conclusion(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class RunnerScope(enum.StrEnum):
    INSTANCE = "instance"
    ORGANIZATION = "organization"
    REPOSITORY = "repository"


class Workflow(IdMixin, TimestampMixin, Base):
    """A workflow file of a repository, as GitHub lists them (`/actions/workflows`): created the
    first time a file is seen, its name refreshed from the default branch."""

    __tablename__ = "actions_workflows"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    path: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(32), default="active")

    __table_args__ = (UniqueConstraint("repository_id", "path"),)


class WorkflowSchedule(IdMixin, Base):
    """One `schedule:` cron of a workflow on the default branch; the scheduler fires from here."""

    __tablename__ = "actions_schedules"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    workflow_path: Mapped[str] = mapped_column(String(255))
    cron: Mapped[str] = mapped_column(String(128))
    # Fire times after this moment are due; set when the cron first appeared.
    since: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("repository_id", "workflow_path", "cron"),)


class WorkflowRun(IdMixin, TimestampMixin, Base):
    __tablename__ = "actions_runs"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    workflow_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("actions_workflows.id", ondelete="CASCADE")
    )
    workflow_path: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    display_title: Mapped[str] = mapped_column(String(1024), default="")
    run_number: Mapped[int] = mapped_column(Integer)
    run_attempt: Mapped[int] = mapped_column(Integer, default=1)
    event: Mapped[str] = mapped_column(String(32))
    # What makes a trigger unique (the push record, the PR action, the cron fire time, a
    # dispatch nonce): two workers handling the same event insert the same key, and one loses.
    trigger_key: Mapped[str] = mapped_column(String(128))
    head_sha: Mapped[str] = mapped_column(String(64))
    head_ref: Mapped[str] = mapped_column(String(1024), default="")
    head_branch: Mapped[str] = mapped_column(String(255), default="")
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    triggering_actor_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    status: Mapped[RunStatus] = mapped_column(
        str_enum(RunStatus, "run_status"), default=RunStatus.QUEUED
    )
    conclusion: Mapped[Conclusion | None] = mapped_column(str_enum(Conclusion, "conclusion"))
    concurrency_group: Mapped[str | None] = mapped_column(String(255))
    cancel_in_progress: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # The parser's `file:line:column: message` lines when the workflow is invalid.
    error: Mapped[str | None] = mapped_column(Text)
    # The workflow as parsed (a JSON object) and the event payload, kept so re-runs and queued
    # jobs need neither git nor the original event.
    workflow_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    event_payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Fork pull requests run without secrets and with a read-only token.
    is_fork: Mapped[bool] = mapped_column(Boolean, default=False)
    run_started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    repository: Mapped[Repository] = relationship(lazy="joined")
    workflow: Mapped[Workflow] = relationship()
    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])
    triggering_actor: Mapped[User | None] = relationship(foreign_keys=[triggering_actor_id])

    __table_args__ = (
        UniqueConstraint("repository_id", "workflow_path", "head_sha", "event", "trigger_key"),
        UniqueConstraint("repository_id", "workflow_path", "run_number"),
        Index(None, "repository_id", "created_at"),
        Index(None, "repository_id", "concurrency_group", "status"),
    )


class WorkflowJob(IdMixin, TimestampMixin, Base):
    __tablename__ = "actions_jobs"

    run_id: Mapped[int] = mapped_column(BigId, ForeignKey("actions_runs.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    job_key: Mapped[str] = mapped_column(String(255))
    # The name after matrix expansion: `build (ubuntu, 3.12)`.
    name: Mapped[str] = mapped_column(String(512))
    matrix: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    runs_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[JobStatus] = mapped_column(
        str_enum(JobStatus, "job_status"), default=JobStatus.WAITING
    )
    conclusion: Mapped[Conclusion | None] = mapped_column(str_enum(Conclusion, "conclusion"))
    runner_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("actions_runners.id", ondelete="SET NULL")
    )
    runner_name: Mapped[str] = mapped_column(String(255), default="")
    queued_at: Mapped[datetime | None] = mapped_column()
    # When the job was last pushed to the queue; the re-enqueue sweep pushes again past a delay.
    enqueued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    # The lease: the runner holding the job refreshes it; the reaper ends stale ones.
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    lease_count: Mapped[int] = mapped_column(Integer, default=0)
    requeues: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # The job token (GITHUB_TOKEN): only its digest; valid while the job runs.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None] = mapped_column()
    # The token's `permissions` (scope -> read/write), resolved when the job was created.
    permissions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Log lines live in actions_log_lines while the job runs, then in object storage.
    log_key: Mapped[str | None] = mapped_column(String(255))
    log_lines: Mapped[int] = mapped_column(Integer, default=0)
    # The job's own `concurrency:` group, evaluated when the job became ready. A waiting job
    # with a group is pending behind another job of the same group (in any run).
    concurrency_group: Mapped[str | None] = mapped_column(String(255))

    run: Mapped[WorkflowRun] = relationship()

    __table_args__ = (
        Index(None, "run_id"),
        Index(None, "status", "queued_at"),
        Index(None, "repository_id", "concurrency_group", "status"),
    )


class JobStep(IdMixin, Base):
    __tablename__ = "actions_steps"

    job_id: Mapped[int] = mapped_column(BigId, ForeignKey("actions_jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(512))
    status: Mapped[JobStatus] = mapped_column(
        str_enum(JobStatus, "job_status"), default=JobStatus.IN_PROGRESS
    )
    conclusion: Mapped[Conclusion | None] = mapped_column(str_enum(Conclusion, "conclusion"))
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (UniqueConstraint("job_id", "number"),)


class JobLogLine(Base):
    """One log line; `idx` is the runner's sequence number, so a retried batch is a no-op."""

    __tablename__ = "actions_log_lines"

    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("actions_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    step: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)


class Annotation(IdMixin, Base):
    __tablename__ = "actions_annotations"

    job_id: Mapped[int] = mapped_column(BigId, ForeignKey("actions_jobs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(String(1024), default="")
    line: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index(None, "job_id"),)


class Runner(IdMixin, TimestampMixin, Base):
    __tablename__ = "actions_runners"

    name: Mapped[str] = mapped_column(String(255))
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[RunnerScope] = mapped_column(str_enum(RunnerScope, "runner_scope"))
    owner_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    repository_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    version: Mapped[str] = mapped_column(String(64), default="")
    last_heartbeat_at: Mapped[datetime | None] = mapped_column()
    busy: Mapped[bool] = mapped_column(Boolean, default=False)


class RunnerRegistrationToken(IdMixin, TimestampMixin, Base):
    __tablename__ = "actions_runner_registration_tokens"

    scope: Mapped[RunnerScope] = mapped_column(str_enum(RunnerScope, "runner_scope"))
    owner_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    repository_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column()
    created_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )


class ActionSecret(IdMixin, TimestampMixin, Base):
    """A repository's Actions secret, encrypted with the instance key (core/crypto.py)."""

    __tablename__ = "actions_secrets"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    encrypted_value: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("repository_id", "name"),)


class ActionVariable(IdMixin, TimestampMixin, Base):
    """A repository's configuration variable (`vars` context); not secret."""

    __tablename__ = "actions_variables"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("repository_id", "name"),)
