"""Commit statuses: what CI and other tools say about a commit, per context.

Statuses are append-only, as on GitHub: a new status for the same (sha, context) supersedes the
earlier one in the combined view, and the list keeps every one of them. The combined state
follows GitHub's rule: `failure` if any latest status is `error` or `failure`, `pending` if there
are none or any is `pending`, otherwise `success`.

`set_status` is the writer the REST API and any other tool call; `set_statuses` records several
at once with the same checks (Actions reports a run's jobs through it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.core.errors import FieldError, ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.core.time import utcnow
from opencodehub.repos.models import CommitState, CommitStatus, Repository

# GitHub keeps at most 1000 statuses per sha and context.
MAX_STATUSES_PER_CONTEXT = 1000
MAX_CONTEXT_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 1024
MAX_TARGET_URL_LENGTH = 2048
FULL_SHA_RE = re.compile(r"\A(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")

# Statements built once (building one costs more than running it), on the table.
_STATUSES = CommitStatus.__table__
_OF_COMMIT = (
    _STATUSES.c.repository_id == bindparam("repository_id"),
    _STATUSES.c.sha == bindparam("sha"),
)
_COUNT = select(func.count(_STATUSES.c.id)).where(
    *_OF_COMMIT, _STATUSES.c.context == bindparam("context")
)
_NEAR_LIMIT = (
    select(_STATUSES.c.context)
    .where(*_OF_COMMIT, _STATUSES.c.context.in_(bindparam("contexts", expanding=True)))
    .group_by(_STATUSES.c.context)
    .having(func.count(_STATUSES.c.id) >= bindparam("at_least"))
    .limit(1)
)
_INSERT = insert(_STATUSES)


@dataclass(frozen=True)
class CombinedStatus:
    state: CommitState
    statuses: list[CommitStatus]  # the latest per context, oldest context first
    total_count: int


def _invalid(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("Status", field_name, "custom", message)])


def _creator_id(creator: Actor | User | None) -> int | None:
    if isinstance(creator, Actor):
        return creator.user_id
    if isinstance(creator, User):
        return creator.id
    return None


def parse_state(state: str | CommitState) -> CommitState:
    try:
        return CommitState(state)
    except ValueError:
        raise _invalid("state", "state is not included in the list") from None


def _validate_target_url(target_url: str | None) -> str | None:
    if target_url is None or target_url == "":
        return None
    parts = urlsplit(target_url)
    if (
        len(target_url) > MAX_TARGET_URL_LENGTH
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(ord(ch) < 0x20 for ch in target_url)
    ):
        raise _invalid("target_url", "target_url must be an http(s) URL")
    return target_url


def _validate_text(field_name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise _invalid(field_name, f"{field_name} contains a NUL character")
    if len(value) > limit:
        raise _invalid(field_name, f"{field_name} is too long (maximum is {limit} characters)")
    return value


def _checked(
    sha: str,
    state: str | CommitState,
    context: str | None,
    description: str | None,
    target_url: str | None,
) -> tuple[str, CommitState, str, str | None, str | None]:
    """(sha, state, context, description, target_url) as stored; ValidationFailed otherwise."""
    sha = sha.lower()
    if not FULL_SHA_RE.match(sha):
        raise _invalid("sha", "sha must be a full commit id")
    parsed = parse_state(state)
    context = (context or "").strip() or "default"
    _validate_text("context", context, MAX_CONTEXT_LENGTH)
    description = _validate_text("description", description, MAX_DESCRIPTION_LENGTH)
    return sha, parsed, context, description, _validate_target_url(target_url)


def _count(session: Session, repository_id: int, sha: str, context: str) -> int:
    params = {"repository_id": repository_id, "sha": sha, "context": context}
    return session.scalar(_COUNT, params) or 0


def _too_many() -> ValidationFailed:
    return _invalid("context", "This SHA and context has reached the maximum number of statuses.")


def set_status(
    session: Session,
    repository: Repository,
    sha: str,
    *,
    state: str | CommitState,
    context: str | None = "default",
    description: str | None = None,
    target_url: str | None = None,
    creator: Actor | User | None = None,
) -> CommitStatus:
    """Record a status for `sha` (a full commit id the caller has checked exists). Raises
    ValidationFailed (422) with GitHub's messages for a bad state, context or URL."""
    sha, parsed, context, description, url = _checked(sha, state, context, description, target_url)
    if _count(session, repository.id, sha, context) >= MAX_STATUSES_PER_CONTEXT:
        raise _too_many()
    status = CommitStatus(
        repository_id=repository.id,
        sha=sha,
        state=parsed,
        context=context,
        description=description,
        target_url=url,
        creator_id=_creator_id(creator),
    )
    session.add(status)
    session.flush()
    return status


@dataclass(frozen=True)
class NewStatus:
    """One status for `set_statuses` (`set_status`'s arguments)."""

    repository_id: int
    sha: str
    state: str | CommitState
    context: str | None = "default"
    description: str | None = None
    target_url: str | None = None
    creator_id: int | None = None


def set_statuses(session: Session, statuses: Sequence[NewStatus]) -> list[ValidationFailed | None]:
    """Record `statuses` in the order given (later ones are newer), with `set_status`'s checks,
    in one insert: for many at once. Returns, for each, None when it was recorded, or the
    ValidationFailed that `set_status` would have raised for it (it was left out).

    The per-context limit costs one query per commit, which finds whether any of the contexts
    is within the batch's size of the limit (as the database compares contexts); only then is
    each status counted before it is inserted, as `set_status` does."""
    results: list[ValidationFailed | None] = []
    rows: list[tuple[int, dict[str, Any]]] = []  # (its place in `statuses`, the row)
    for item in statuses:
        try:
            sha, state, context, description, url = _checked(
                item.sha, item.state, item.context, item.description, item.target_url
            )
        except ValidationFailed as exc:
            results.append(exc)
            continue
        row = {
            "repository_id": item.repository_id,
            "sha": sha,
            "state": state,
            "context": context,
            "description": description,
            "target_url": url,
            "creator_id": item.creator_id,
        }
        rows.append((len(results), row))
        results.append(None)
    if not rows:
        return results
    commits: dict[tuple[int, str], set[str]] = {}
    for _index, row in rows:
        commits.setdefault((row["repository_id"], row["sha"]), set()).add(row["context"])
    near_limit = any(
        session.execute(
            _NEAR_LIMIT,
            {
                "repository_id": repository_id,
                "sha": sha,
                "contexts": sorted(contexts),
                "at_least": MAX_STATUSES_PER_CONTEXT - len(rows),
            },
        ).first()
        is not None
        for (repository_id, sha), contexts in commits.items()
    )
    now = utcnow()
    if not near_limit:
        session.execute(
            _INSERT, [{**row, "created_at": now, "updated_at": now} for _index, row in rows]
        )
        return results
    for index, row in rows:
        if _count(session, row["repository_id"], row["sha"], row["context"]) >= (
            MAX_STATUSES_PER_CONTEXT
        ):
            results[index] = _too_many()
            continue
        session.execute(_INSERT, [{**row, "created_at": now, "updated_at": now}])
    return results


def list_statuses(
    session: Session, repository: Repository, sha: str, page: Page | None = None
) -> tuple[list[CommitStatus], bool]:
    """Every status of `sha`, newest first; and whether another page follows."""
    query = (
        select(CommitStatus)
        .where(CommitStatus.repository_id == repository.id, CommitStatus.sha == sha.lower())
        .order_by(CommitStatus.id.desc())
    )
    if page is None:
        return list(session.scalars(query)), False
    rows = list(session.scalars(query.offset(page.offset).limit(page.limit + 1)))
    return rows[: page.limit], len(rows) > page.limit


def latest_by_context(session: Session, repository: Repository, sha: str) -> list[CommitStatus]:
    """The latest status of each context of `sha`, in the order the contexts first appeared."""
    newest = (
        select(func.max(CommitStatus.id))
        .where(CommitStatus.repository_id == repository.id, CommitStatus.sha == sha.lower())
        .group_by(CommitStatus.context)
    )
    rows = session.scalars(select(CommitStatus).where(CommitStatus.id.in_(newest))).all()
    first_seen = dict(
        session.execute(
            select(CommitStatus.context, func.min(CommitStatus.id))
            .where(CommitStatus.repository_id == repository.id, CommitStatus.sha == sha.lower())
            .group_by(CommitStatus.context)
        ).all()
    )
    return sorted(rows, key=lambda status: first_seen.get(status.context, status.id))


def combine(states: Iterable[CommitState]) -> CommitState:
    """GitHub's combined state of the latest statuses."""
    seen = list(states)
    if any(state in (CommitState.ERROR, CommitState.FAILURE) for state in seen):
        return CommitState.FAILURE
    if not seen or any(state == CommitState.PENDING for state in seen):
        return CommitState.PENDING
    return CommitState.SUCCESS


def combined_status(session: Session, repository: Repository, sha: str) -> CombinedStatus:
    latest = latest_by_context(session, repository, sha)
    return CombinedStatus(combine(s.state for s in latest), latest, len(latest))


def missing_or_failing(
    session: Session, repository: Repository, sha: str, contexts: Sequence[str]
) -> list[tuple[str, CommitState | None]]:
    """The required `contexts` whose latest status on `sha` is not `success` (None: no status
    at all), in the order given."""
    if not contexts:
        return []
    latest = {
        status.context: status.state for status in latest_by_context(session, repository, sha)
    }
    return [
        (context, latest.get(context))
        for context in contexts
        if latest.get(context) != CommitState.SUCCESS
    ]
