"""Pull requests, their push history, per-file "viewed" marks, per-repository merge settings,
and code review: reviews, review (line) comments and requested reviewers.

A pull request is an issue (`issues.Issue` with `is_pull_request`): the number, title, body,
state, comments, labels and assignees live there; this table holds what only a pull request has,
its refs and its merge state. `number` and `repository_id` are copied from the issue so a pull
request is found by number without a join.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin, str_enum
from opencodehub.issues.models import Issue


class MergeMethod(enum.StrEnum):
    MERGE = "merge"
    SQUASH = "squash"
    REBASE = "rebase"


class MergeableState(enum.StrEnum):
    """GitHub's `mergeable_state` words."""

    UNKNOWN = "unknown"  # not computed yet for the current head and base
    CLEAN = "clean"  # mergeable, nothing blocks it
    DIRTY = "dirty"  # conflicts
    BLOCKED = "blocked"  # branch protection blocks it
    BEHIND = "behind"  # the base must be merged in first (strict status checks)
    UNSTABLE = "unstable"  # failing non-required checks
    DRAFT = "draft"


class PullRequest(IdMixin, TimestampMixin, Base):
    __tablename__ = "pull_requests"

    issue_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("issues.id", ondelete="CASCADE"), unique=True
    )
    # The base repository (where the pull request lives) and the head's (None once a fork that
    # held the head was deleted; the head then lives on only as refs/pull/{n}/head).
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    head_repository_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="SET NULL"), index=True
    )
    head_ref: Mapped[str] = mapped_column(String(255))
    head_sha: Mapped[str] = mapped_column(String(64))
    base_ref: Mapped[str] = mapped_column(String(255))
    base_sha: Mapped[str] = mapped_column(String(64))
    merge_base_sha: Mapped[str | None] = mapped_column(String(64))
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    merged: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_at: Mapped[datetime | None] = mapped_column()
    merged_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    merge_commit_sha: Mapped[str | None] = mapped_column(String(64))
    # None while unknown (GitHub's `mergeable: null`): computed in the background after a push.
    mergeable: Mapped[bool | None] = mapped_column(Boolean)
    mergeable_state: Mapped[str] = mapped_column(String(20), default=MergeableState.UNKNOWN.value)
    conflicting_files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # "{base_sha}:{head_sha}" the mergeability was computed for; a stale key means unknown.
    mergeability_key: Mapped[str | None] = mapped_column(String(130))
    # Commit and line counts of the pull request's diff, cached for lists.
    commits_count: Mapped[int] = mapped_column(Integer, default=0)
    additions: Mapped[int] = mapped_column(Integer, default=0)
    deletions: Mapped[int] = mapped_column(Integer, default=0)
    changed_files: Mapped[int] = mapped_column(Integer, default=0)
    maintainer_can_modify: Mapped[bool] = mapped_column(Boolean, default=False)
    # Auto-merge: merge with this method once branch protection is satisfied.
    auto_merge_method: Mapped[str | None] = mapped_column(String(10))
    auto_merge_enabled_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    auto_merge_commit_title: Mapped[str | None] = mapped_column(String(1024))
    auto_merge_commit_message: Mapped[str | None] = mapped_column(Text)

    issue: Mapped[Issue] = relationship(lazy="joined")
    merged_by: Mapped[User | None] = relationship(foreign_keys=[merged_by_id])
    auto_merge_enabled_by: Mapped[User | None] = relationship(
        foreign_keys=[auto_merge_enabled_by_id]
    )

    __table_args__ = (
        UniqueConstraint("repository_id", "number"),
        Index(None, "repository_id", "base_ref"),
        Index(None, "repository_id", "head_ref"),
        Index(None, "auto_merge_method"),
    )

    @property
    def head_pull_ref(self) -> str:
        """The ref in the base repository that keeps the head's commits."""
        return f"refs/pull/{self.number}/head"

    @property
    def is_open(self) -> bool:
        return self.issue.state == "open"

    @property
    def state(self) -> str:
        return self.issue.state

    def __repr__(self) -> str:
        return f"<PullRequest {self.repository_id}#{self.number}>"


class PullRequestPush(IdMixin, Base):
    """One move of a pull request's head (a push, a force-push) or base (a base change): the
    timeline's "force-pushed" and "changed the base" entries."""

    __tablename__ = "pull_request_pushes"

    pull_request_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("pull_requests.id", ondelete="CASCADE")
    )
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20), default="head")  # head, base
    ref: Mapped[str] = mapped_column(String(255), default="")
    before_sha: Mapped[str] = mapped_column(String(64))
    after_sha: Mapped[str] = mapped_column(String(64))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column()

    actor: Mapped[User | None] = relationship(lazy="joined")

    __table_args__ = (Index(None, "pull_request_id", "created_at"),)


class FileViewed(IdMixin, Base):
    """A reviewer's "Viewed" mark on one file of a pull request, valid while the file's blob
    is the one that was viewed (a new change to the file clears it, as on GitHub)."""

    __tablename__ = "pull_request_viewed_files"

    pull_request_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("pull_requests.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    # Paths can exceed what a unique index holds on MySQL; the index keys on their SHA-256.
    path_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    blob_sha: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()

    __table_args__ = (UniqueConstraint("pull_request_id", "user_id", "path_hash"),)


class RepositoryMergeSettings(IdMixin, TimestampMixin, Base):
    """Which merge methods a repository allows and what happens after a merge. A repository
    without a row has GitHub's defaults (every method allowed, branches kept)."""

    __tablename__ = "repository_merge_settings"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE"), unique=True
    )
    allow_merge_commit: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_squash_merge: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_rebase_merge: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_auto_merge: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_branch_on_merge: Mapped[bool] = mapped_column(Boolean, default=False)

    def allows(self, method: MergeMethod | str) -> bool:
        return {
            MergeMethod.MERGE: self.allow_merge_commit,
            MergeMethod.SQUASH: self.allow_squash_merge,
            MergeMethod.REBASE: self.allow_rebase_merge,
        }[MergeMethod(method)]


class ReviewState(enum.StrEnum):
    PENDING = "PENDING"
    COMMENTED = "COMMENTED"
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    DISMISSED = "DISMISSED"


class Side(enum.StrEnum):
    LEFT = "LEFT"
    RIGHT = "RIGHT"


class PullReview(IdMixin, TimestampMixin, Base):
    """A review: a verdict (or a pending draft only its author sees) with line comments."""

    __tablename__ = "pull_reviews"

    pull_request_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("pull_requests.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    state: Mapped[ReviewState] = mapped_column(
        str_enum(ReviewState, "review_state"), default=ReviewState.PENDING
    )
    body: Mapped[str] = mapped_column(Text, default="")
    # The head the review was written against; an approval of an older head is "stale".
    commit_id: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime | None] = mapped_column()
    dismissed_message: Mapped[str | None] = mapped_column(Text)

    user: Mapped[User | None] = relationship(lazy="joined")

    __table_args__ = (Index(None, "pull_request_id", "user_id"),)


class ReviewComment(IdMixin, TimestampMixin, Base):
    """A comment on a line (or a range of lines) of a pull request's diff.

    `line`/`side` (and `start_line`/`start_side` for ranges) locate it in the diff at
    `commit_id`; the `original_*` fields keep where it was written. When the head moves and the
    commented lines change, `outdated` is set and `line`/`position` become None, as on GitHub.
    A thread is a root comment and its replies (`in_reply_to_id` is always the root); its
    resolution lives on the root."""

    __tablename__ = "pull_review_comments"

    pull_request_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("pull_requests.id", ondelete="CASCADE")
    )
    review_id: Mapped[int] = mapped_column(BigId, ForeignKey("pull_reviews.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text)
    side: Mapped[Side] = mapped_column(str_enum(Side, "review_side"), default=Side.RIGHT)
    line: Mapped[int | None] = mapped_column(Integer)
    start_line: Mapped[int | None] = mapped_column(Integer)
    start_side: Mapped[Side | None] = mapped_column(str_enum(Side, "review_side"))
    original_line: Mapped[int] = mapped_column(Integer)
    original_start_line: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int | None] = mapped_column(Integer)
    original_position: Mapped[int] = mapped_column(Integer)
    commit_id: Mapped[str] = mapped_column(String(64))
    original_commit_id: Mapped[str] = mapped_column(String(64))
    diff_hunk: Mapped[str] = mapped_column(Text, default="")
    # The commented lines' text when written: what a suggestion replaces, and how a moved
    # head is told to have changed them.
    line_text: Mapped[str] = mapped_column(Text, default="")
    in_reply_to_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("pull_review_comments.id", ondelete="CASCADE")
    )
    body: Mapped[str] = mapped_column(Text, default="")
    outdated: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    suggestion_applied_sha: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User | None] = relationship(lazy="joined", foreign_keys=[user_id])
    resolved_by: Mapped[User | None] = relationship(foreign_keys=[resolved_by_id])
    review: Mapped[PullReview] = relationship(lazy="joined")

    __table_args__ = (
        Index(None, "pull_request_id", "id"),
        Index(None, "review_id"),
        Index(None, "in_reply_to_id"),
    )


class ReviewRequest(IdMixin, TimestampMixin, Base):
    """A requested reviewer: a user or an organization team. Cleared when they review."""

    __tablename__ = "pull_review_requests"

    pull_request_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("pull_requests.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("teams.id", ondelete="CASCADE"))
    requested_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (Index(None, "pull_request_id"),)
