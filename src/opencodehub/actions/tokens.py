"""Job tokens (`GITHUB_TOKEN`): short-lived bearer secrets scoped to one job's repository.

A token is issued when a runner takes a job and revoked when the job completes; only its SHA-256
is stored, on the job row. `actor_for_job_token` turns one back into an `Actor` for the API and
for git over HTTP (accounts.service tries it after personal access tokens); `repos/authz.py`
then limits it to the job's repository and the workflow's `permissions`.

The token acts as the reserved account `github-actions` (GitHub's `github-actions[bot]`), so
what it writes (commit statuses, issues, comments) has an author. That account is created on
first use with no password and no email: nobody can sign in as it, and it holds no grant of its
own; every request made with a job token is still decided by `authorize()` from the job's
repository and `permissions` (see docs/actions-server.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import AccountKind, Email, User
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
BOT_USERNAME = "github-actions"
# Scopes whose writes have an author (the bot account).
AUTHORED_SCOPES = ("contents", "issues", "pull-requests", "statuses")
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
    permissions = job.permissions or {}
    # Only a token allowed to write acts as the account: a read-only token stays authorless,
    # so routes that need a signed-in author (opening an issue) refuse it.
    writes = any(permissions.get(scope) == "write" for scope in AUTHORED_SCOPES)
    return Actor(
        user=bot_user(session) if writes else None,
        method="job_token",
        # No PAT scope: routes that act on the account itself (`/user/...`) refuse the token.
        scopes=frozenset(),
        job_repository_id=job.repository_id,
        job_permissions=tuple(sorted(permissions.items())),
    )


def _is_bot(user: User, session: Session) -> bool:
    """The reserved account: no password and no email, which no sign-up can produce."""
    if user.password_hash or user.is_site_admin or user.kind != AccountKind.USER:
        return False
    return session.scalar(select(Email.id).where(Email.user_id == user.id).limit(1)) is None


def bot_user(session: Session) -> User | None:
    """The `github-actions` account, created on first use. None when a person holds the name
    (then the token writes nothing that needs an author, as before)."""
    found = session.scalar(select(User).where(User.lower_username == BOT_USERNAME))
    if found is None:
        bot = User(
            kind=AccountKind.USER,
            username=BOT_USERNAME,
            lower_username=BOT_USERNAME,
            full_name="GitHub Actions",
            bio="The account OpenCodeHub Actions' job tokens act as.",
            password_hash=None,
        )
        try:
            with session.begin_nested():
                session.add(bot)
                session.flush()
            return bot
        except IntegrityError:  # another request created it at the same moment
            found = session.scalar(select(User).where(User.lower_username == BOT_USERNAME))
            if found is None:
                return None
    return found if found.is_active and _is_bot(found, session) else None
