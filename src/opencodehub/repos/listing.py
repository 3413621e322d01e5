"""Read-only repository queries for the web UI's lists: explore, recent pushes, team grants.

Writes stay in `repos.service`; these only read, and every list is narrowed by
`service.readable_condition(actor)` (or `authorize()` for a single repository), so a page can
never show what its viewer may not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, Team, User
from opencodehub.core.pagination import Page
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import PushRecord, Repository, TeamRepository, Visibility
from opencodehub.repos.service import readable_condition

MAX_QUERY_LENGTH = 100
ExploreSort = Literal["updated", "name"]
EXPLORE_SORTS: tuple[ExploreSort, ...] = ("updated", "name")


def clean_query(raw: str | None) -> str:
    """A search box's text, made safe to match with: control characters (NUL among them, which
    PostgreSQL refuses) dropped, surrounding space trimmed, at most 100 characters."""
    if not raw:
        return ""
    kept = "".join(char for char in raw[: MAX_QUERY_LENGTH * 4] if ord(char) >= 0x20)
    return kept.strip()[:MAX_QUERY_LENGTH]


def explorable_condition(actor: Actor) -> ColumnElement[bool]:
    """What explore lists: public repositories, and internal ones for signed-in users. Private
    repositories stay off it even for their owners (their dashboard lists those)."""
    listed: ColumnElement[bool] = Repository.visibility == Visibility.PUBLIC
    if actor.user is not None:
        listed = or_(listed, Repository.visibility == Visibility.INTERNAL)
    return and_(listed, readable_condition(actor))


def _name_matches(query: str) -> ColumnElement[bool]:
    """`name` matches a repository name (or its owner); `owner/name` matches both parts."""
    lowered = query.lower()
    owner_part, slash, name_part = lowered.partition("/")
    if slash:
        condition: ColumnElement[bool] = Repository.lower_name.contains(name_part, autoescape=True)
        if owner_part:
            condition = and_(condition, User.lower_username.contains(owner_part, autoescape=True))
        return condition
    return or_(
        Repository.lower_name.contains(lowered, autoescape=True),
        User.lower_username.contains(lowered, autoescape=True),
    )


def explore(
    session: Session, actor: Actor, page: Page, *, query: str = "", sort: ExploreSort = "updated"
) -> tuple[list[Repository], int]:
    """One page of explorable repositories matching `query`, and how many match in all."""
    condition = explorable_condition(actor)
    if query:
        condition = and_(condition, _name_matches(query))
    base = select(Repository).join(User, User.id == Repository.owner_id).where(condition)
    if sort == "name":
        ordered = base.order_by(User.lower_username, Repository.lower_name, Repository.id)
    else:
        ordered = base.order_by(Repository.updated_at.desc(), Repository.id.desc())
    total = (
        session.scalar(
            select(func.count())
            .select_from(Repository)
            .join(User, User.id == Repository.owner_id)
            .where(condition)
        )
        or 0
    )
    return list(session.scalars(ordered.offset(page.offset).limit(page.limit))), total


@dataclass(frozen=True)
class PushEntry:
    """One ref update for the dashboard's activity list."""

    repository: Repository
    pusher: User | None
    ref: str
    old_sha: str
    new_sha: str
    forced: bool
    pushed_at: datetime

    @property
    def ref_kind(self) -> str:
        return "tag" if self.ref.startswith("refs/tags/") else "branch"

    @property
    def short_ref(self) -> str:
        return self.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")

    @property
    def deleted(self) -> bool:
        return set(self.new_sha) == {"0"}

    @property
    def created(self) -> bool:
        return set(self.old_sha) == {"0"}


def recent_pushes(session: Session, actor: Actor, limit: int = 20) -> list[PushEntry]:
    """The newest ref updates in repositories the actor may read."""
    rows = session.execute(
        select(PushRecord, Repository, User)
        .join(Repository, Repository.id == PushRecord.repository_id)
        .outerjoin(User, User.id == PushRecord.pusher_id)
        .where(readable_condition(actor))
        .order_by(PushRecord.pushed_at.desc(), PushRecord.id.desc())
        .limit(limit)
    ).all()
    return [
        PushEntry(
            repository=repository,
            pusher=pusher,
            ref=push.ref,
            old_sha=push.old_sha,
            new_sha=push.new_sha,
            forced=push.forced,
            pushed_at=push.pushed_at,
        )
        for push, repository, pusher in rows
    ]


def repository_teams(
    session: Session, actor: Actor, repo: Repository
) -> list[tuple[Team, Permission]]:
    """The teams granted access to the repository, with their level (for its admins)."""
    authorize(session, actor, repo, Permission.ADMIN)
    rows = session.execute(
        select(Team, TeamRepository.permission)
        .join(TeamRepository, TeamRepository.team_id == Team.id)
        .where(TeamRepository.repository_id == repo.id)
        .order_by(Team.slug)
    ).all()
    return [(team, permission) for team, permission in rows]
