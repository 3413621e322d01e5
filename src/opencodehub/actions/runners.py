"""Runners and their registration: tokens an admin creates, runners registering with them.

A registration token is good for one hour and for any number of registrations (as GitHub's);
it decides the runner's scope: the whole instance (site admins), an organization (its owners)
or one repository (its admins). Only SHA-256 digests of tokens and runner secrets are stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.actions.models import Runner, RunnerRegistrationToken, RunnerScope
from opencodehub.core.crypto import random_token, sha256_hex
from opencodehub.core.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from opencodehub.core.time import utcnow
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository

REGISTRATION_TOKEN_LIFETIME = timedelta(hours=1)
REGISTRATION_PREFIX = "ochreg_"
RUNNER_SECRET_PREFIX = "ochr_"  # noqa: S105 - a prefix, not a secret
MAX_LABELS = 64


class BadRegistrationToken(Unauthorized):
    default_message = "The registration token is invalid or has expired."


def create_registration_token(
    session: Session,
    actor: Actor,
    *,
    repository: Repository | None = None,
    organization: User | None = None,
) -> tuple[RunnerRegistrationToken, str]:
    """A token for the instance (neither given), an organization or a repository."""
    if actor.method == "system":
        # The operator on the server's own command line: no account to authorize.
        scope = (
            RunnerScope.REPOSITORY
            if repository is not None
            else RunnerScope.ORGANIZATION
            if organization is not None
            else RunnerScope.INSTANCE
        )
    elif repository is not None:
        authorize(session, actor, repository, Permission.ADMIN)
        scope = RunnerScope.REPOSITORY
    elif organization is not None:
        authorize(session, actor, organization, "admin")
        scope = RunnerScope.ORGANIZATION
    else:
        if not actor.is_site_admin:
            raise Forbidden("Only site administrators create instance runner tokens.")
        scope = RunnerScope.INSTANCE
    plaintext = REGISTRATION_PREFIX + random_token(24)
    row = RunnerRegistrationToken(
        scope=scope,
        owner_id=organization.id if organization is not None else None,
        repository_id=repository.id if repository is not None else None,
        token_hash=sha256_hex(plaintext),
        expires_at=utcnow() + REGISTRATION_TOKEN_LIFETIME,
        created_by_id=actor.user_id,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def _clean_labels(labels: list[str]) -> list[str]:
    cleaned: list[str] = []
    for label in labels:
        name = label.strip().lower()
        if not name:
            continue
        if len(name) > 100 or any(ch in name for ch in ",\x00\n\r"):
            raise ValidationFailed.invalid("Runner", "labels", f"invalid label {label[:100]!r}")
        if name not in cleaned:
            cleaned.append(name)
    if len(cleaned) > MAX_LABELS:
        raise ValidationFailed.invalid("Runner", "labels", f"at most {MAX_LABELS} labels")
    # Every runner answers to `self-hosted`, as GitHub's do.
    if "self-hosted" not in cleaned:
        cleaned.append("self-hosted")
    return cleaned


def register_runner(
    session: Session, token: str, name: str, labels: list[str], version: str = ""
) -> tuple[Runner, str]:
    """A new runner from a valid registration token; returns it and its secret (shown once)."""
    if not token.startswith(REGISTRATION_PREFIX) or len(token) > 255:
        raise BadRegistrationToken()
    row = session.scalar(
        select(RunnerRegistrationToken).where(
            RunnerRegistrationToken.token_hash == sha256_hex(token)
        )
    )
    if row is None or row.expires_at <= utcnow():
        raise BadRegistrationToken()
    secret = RUNNER_SECRET_PREFIX + random_token(32)
    runner = Runner(
        name=name,
        labels=_clean_labels(labels),
        scope=row.scope,
        owner_id=row.owner_id,
        repository_id=row.repository_id,
        token_hash=sha256_hex(secret),
        version=version,
        last_heartbeat_at=utcnow(),
    )
    session.add(runner)
    session.flush()
    return runner, secret


def list_runners(
    session: Session,
    actor: Actor,
    *,
    repository: Repository | None = None,
    organization: User | None = None,
) -> list[Runner]:
    """The runners an admin manages at a level: a repository sees its own and those of its
    organization and the instance, which may take its jobs."""
    if repository is not None:
        authorize(session, actor, repository, Permission.ADMIN)
        condition = or_(
            Runner.repository_id == repository.id,
            Runner.owner_id == repository.owner_id,
            Runner.scope == RunnerScope.INSTANCE,
        )
    elif organization is not None:
        authorize(session, actor, organization, "admin")
        condition = or_(Runner.owner_id == organization.id, Runner.scope == RunnerScope.INSTANCE)
    else:
        if not actor.is_site_admin:
            raise NotFound()
        condition = Runner.id.is_not(None)
    return list(session.scalars(select(Runner).where(condition).order_by(Runner.id)))


def runner_status(runner: Runner, now: datetime | None = None) -> str:
    now = now or utcnow()
    seen = runner.last_heartbeat_at
    return "online" if seen is not None and now - seen < timedelta(minutes=2) else "offline"


def delete_runner(
    session: Session,
    actor: Actor,
    runner_id: int,
    *,
    repository: Repository | None = None,
    organization: User | None = None,
) -> None:
    runner = session.get(Runner, runner_id) if 0 < runner_id < 2**63 else None
    if runner is None:
        raise NotFound()
    if repository is not None:
        authorize(session, actor, repository, Permission.ADMIN)
        if runner.repository_id != repository.id:
            raise NotFound()
    elif organization is not None:
        authorize(session, actor, organization, "admin")
        if runner.owner_id != organization.id or runner.repository_id is not None:
            raise NotFound()
    elif not actor.is_site_admin:
        raise NotFound()
    session.delete(runner)
