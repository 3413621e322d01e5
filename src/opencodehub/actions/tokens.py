"""Job tokens (`GITHUB_TOKEN`): short-lived bearer secrets scoped to one job's repository.

A token is issued when a runner takes a job and revoked when the job completes; only its SHA-256
is stored, on the job row. `actor_for_job_token` turns one back into an `Actor` for the API and
for git over HTTP (accounts.service tries it after personal access tokens); `repos/authz.py`
then limits it to the job's repository and the workflow's `permissions`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.actions.models import JobStatus, WorkflowJob
from opencodehub.core.crypto import random_token, sha256_hex
from opencodehub.core.time import utcnow

JOB_TOKEN_PREFIX = "ochj_"  # noqa: S105 - a prefix, not a secret
# A job may run for up to its `timeout-minutes` (360 by default); the token lives a bit longer
# and dies with the job anyway.
TOKEN_LIFETIME = timedelta(hours=6, minutes=10)

# GitHub's `permissions` scopes.
SCOPES = (
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "metadata",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
)
# OpenCodeHub's default is GitHub's "restricted" setting: read the contents and metadata.
DEFAULT_PERMISSIONS = {"contents": "read", "metadata": "read"}


def resolve_permissions(
    workflow_level: Any, job_level: Any, *, read_only: bool = False
) -> dict[str, str]:
    """The token's permissions: the job's `permissions` over the workflow's over the default;
    `read-all`/`write-all` shorthands; everything read-only for fork pull requests."""
    chosen = job_level if job_level is not None else workflow_level
    result: dict[str, str]
    if chosen is None:
        result = dict(DEFAULT_PERMISSIONS)
    elif chosen == "read-all":
        result = dict.fromkeys(SCOPES, "read")
    elif chosen == "write-all":
        result = dict.fromkeys(SCOPES, "write")
    elif isinstance(chosen, dict):
        result = {"metadata": "read"}
        for scope, level in chosen.items():
            if str(scope) in SCOPES and level in ("read", "write", "none"):
                result[str(scope)] = str(level)
    else:
        result = {"metadata": "read"}
    if read_only:
        result = {scope: "read" for scope, level in result.items() if level != "none"}
    return {scope: level for scope, level in result.items() if level != "none"}


def issue_job_token(job: WorkflowJob) -> str:
    plaintext = JOB_TOKEN_PREFIX + random_token(30)
    job.token_hash = sha256_hex(plaintext)
    job.token_expires_at = utcnow() + TOKEN_LIFETIME
    return plaintext


def revoke_job_token(job: WorkflowJob) -> None:
    job.token_hash = None
    job.token_expires_at = None


def actor_for_job_token(session: Session, secret: str) -> Actor | None:
    """The actor a job token stands for while its job runs; None for anything else."""
    if not secret.startswith(JOB_TOKEN_PREFIX) or len(secret) > 128:
        return None
    job = session.scalar(select(WorkflowJob).where(WorkflowJob.token_hash == sha256_hex(secret)))
    if job is None or job.status != JobStatus.IN_PROGRESS:
        return None
    if job.token_expires_at is None or job.token_expires_at <= utcnow():
        return None
    return Actor(
        user=None,
        method="job_token",
        job_repository_id=job.repository_id,
        job_permissions=tuple(sorted((job.permissions or {}).items())),
    )
