"""Repository records. The git data lives on disk by id (`repos/{id // 1000}/{id}.git`); names map
to ids here, so a rename or a transfer is a database update."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import Permission, User
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin, str_enum


class Visibility(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    INTERNAL = "internal"


class Repository(IdMixin, TimestampMixin, Base):
    __tablename__ = "repositories"

    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    lower_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    homepage: Mapped[str] = mapped_column(String(255), default="")
    # Topics are few and short; a space-separated column keeps them cheap to read with the repo.
    topics: Mapped[str] = mapped_column(String(1024), default="")
    visibility: Mapped[Visibility] = mapped_column(
        str_enum(Visibility, "visibility"), default=Visibility.PUBLIC
    )
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    is_empty: Mapped[bool] = mapped_column(Boolean, default=True)
    size_kb: Mapped[int] = mapped_column(Integer, default=0)
    pushed_at: Mapped[datetime | None] = mapped_column()
    fork_parent_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="SET NULL")
    )

    owner: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("owner_id", "lower_name"),)

    @property
    def full_name(self) -> str:
        return f"{self.owner.username}/{self.name}"

    @property
    def is_private(self) -> bool:
        return self.visibility == Visibility.PRIVATE

    @property
    def topic_list(self) -> list[str]:
        return [topic for topic in self.topics.split() if topic]

    def __repr__(self) -> str:
        return f"<Repository {self.id} {self.name!r}>"


class RepositoryRedirect(IdMixin, TimestampMixin, Base):
    """An old owner/name that still leads to a repository after a rename or a transfer."""

    __tablename__ = "repository_redirects"

    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    lower_name: Mapped[str] = mapped_column(String(100))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )

    __table_args__ = (UniqueConstraint("owner_id", "lower_name"),)


class Collaborator(IdMixin, TimestampMixin, Base):
    __tablename__ = "collaborators"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    permission: Mapped[Permission] = mapped_column(
        str_enum(Permission, "permission"), default=Permission.WRITE
    )

    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("repository_id", "user_id"), Index(None, "user_id"))


class TeamRepository(IdMixin, TimestampMixin, Base):
    __tablename__ = "team_repositories"

    team_id: Mapped[int] = mapped_column(BigId, ForeignKey("teams.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    permission: Mapped[Permission] = mapped_column(
        str_enum(Permission, "permission"), default=Permission.READ
    )

    __table_args__ = (UniqueConstraint("team_id", "repository_id"), Index(None, "repository_id"))


class ProtectedBranch(IdMixin, TimestampMixin, Base):
    """A branch protection rule: a branch-name pattern (GitHub's fnmatch rules, see
    `pulls.protection.pattern_matches`) and what changing a matching branch requires.

    The defaults are the least a rule does: no force pushes, no deletion. Every other
    requirement is opt-in, as on GitHub."""

    __tablename__ = "protected_branches"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    pattern: Mapped[str] = mapped_column(String(255))
    allow_force_pushes: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_deletions: Mapped[bool] = mapped_column(Boolean, default=False)
    # Admins obey the rule too (GitHub's "enforce_admins"; force pushes and deletions are
    # refused to everyone either way).
    enforce_admins: Mapped[bool] = mapped_column(Boolean, default=False)
    # Changes land only through a merged pull request with this many approvals.
    require_pull_request: Mapped[bool] = mapped_column(Boolean, default=False)
    required_approving_review_count: Mapped[int] = mapped_column(Integer, default=0)
    dismiss_stale_reviews: Mapped[bool] = mapped_column(Boolean, default=False)
    require_code_owner_reviews: Mapped[bool] = mapped_column(Boolean, default=False)
    # Commit status contexts (one per line) that must be `success`; `strict`: the pull
    # request's head must contain the base branch's tip.
    require_status_checks: Mapped[bool] = mapped_column(Boolean, default=False)
    strict_status_checks: Mapped[bool] = mapped_column(Boolean, default=False)
    required_contexts: Mapped[str] = mapped_column(Text, default="")
    # Only the listed users and teams (ProtectedBranchAllowance) may push or merge.
    restrict_pushes: Mapped[bool] = mapped_column(Boolean, default=False)

    allowances: Mapped[list[ProtectedBranchAllowance]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProtectedBranchAllowance.id"
    )

    __table_args__ = (UniqueConstraint("repository_id", "pattern"),)

    @property
    def context_list(self) -> list[str]:
        return [line for line in self.required_contexts.splitlines() if line.strip()]


class ProtectedBranchAllowance(IdMixin, TimestampMixin, Base):
    """A user or a team allowed to push to a rule's branches when pushes are restricted."""

    __tablename__ = "protected_branch_allowances"

    protected_branch_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("protected_branches.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("teams.id", ondelete="CASCADE"))

    __table_args__ = (Index(None, "protected_branch_id"),)


class CommitState(enum.StrEnum):
    ERROR = "error"
    FAILURE = "failure"
    PENDING = "pending"
    SUCCESS = "success"


class CommitStatus(IdMixin, TimestampMixin, Base):
    """One commit status, as CI systems post them: the latest per (sha, context) counts."""

    __tablename__ = "commit_statuses"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    sha: Mapped[str] = mapped_column(String(64))
    state: Mapped[CommitState] = mapped_column(str_enum(CommitState, "commit_state"))
    context: Mapped[str] = mapped_column(String(255), default="default")
    description: Mapped[str | None] = mapped_column(String(1024))
    target_url: Mapped[str | None] = mapped_column(Text)
    creator_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )

    creator: Mapped[User | None] = relationship(lazy="joined")

    __table_args__ = (Index(None, "repository_id", "sha", "context"),)


class CommitRecord(IdMixin, Base):
    """The commit index, filled incrementally by post-receive: one row per commit reachable from
    a branch, for author search and activity without walking git."""

    __tablename__ = "commits"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    sha: Mapped[str] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(255))
    author_email: Mapped[str] = mapped_column(String(255))
    authored_at: Mapped[datetime] = mapped_column()
    committer_name: Mapped[str] = mapped_column(String(255))
    committer_email: Mapped[str] = mapped_column(String(255))
    committed_at: Mapped[datetime] = mapped_column()
    summary: Mapped[str] = mapped_column(String(1024))

    __table_args__ = (
        UniqueConstraint("repository_id", "sha"),
        Index(None, "repository_id", "committed_at"),
        Index(None, "repository_id", "author_email"),
    )


class PushRecord(IdMixin, Base):
    """One ref update of a push, as post-receive saw it: the audit trail and the event source."""

    __tablename__ = "pushes"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    pusher_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    ref: Mapped[str] = mapped_column(String(1024))
    old_sha: Mapped[str] = mapped_column(String(64))
    new_sha: Mapped[str] = mapped_column(String(64))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    pushed_at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index(None, "repository_id", "pushed_at"),)
