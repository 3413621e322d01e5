"""Issues, comments, labels, milestones, assignees, reactions and the issue timeline.

A pull request is an issue with `is_pull_request` set: both share one per-repository number
sequence, held in `issue_counters` so that concurrent creation never hands out a number twice.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin


class IssueState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class StateReason(enum.StrEnum):
    COMPLETED = "completed"
    NOT_PLANNED = "not_planned"
    REOPENED = "reopened"


LOCK_REASONS = ("off-topic", "too heated", "resolved", "spam")

REACTION_CONTENTS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")


class IssueCounter(Base):
    """The last number handed out in a repository, shared by issues and pull requests."""

    __tablename__ = "issue_counters"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    last_number: Mapped[int] = mapped_column(Integer, default=0)


issue_labels = Table(
    "issue_labels",
    Base.metadata,
    Column("issue_id", BigId, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("label_id", BigId, ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "label_id"),
)

issue_assignees = Table(
    "issue_assignees",
    Base.metadata,
    Column("issue_id", BigId, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "user_id"),
)


class Label(IdMixin, TimestampMixin, Base):
    __tablename__ = "labels"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(50))
    lower_name: Mapped[str] = mapped_column(String(50))
    color: Mapped[str] = mapped_column(String(6), default="ededed")
    description: Mapped[str] = mapped_column(String(100), default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("repository_id", "lower_name"),)


class LabelSeed(Base):
    """Marks a repository whose default labels were created (lazily, on first use), so labels
    deleted afterwards are not brought back."""

    __tablename__ = "label_seeds"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )


class Milestone(IdMixin, TimestampMixin, Base):
    __tablename__ = "milestones"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(255))
    lower_title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(10), default="open")
    due_on: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    creator_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )

    creator: Mapped[User | None] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("repository_id", "number"),
        UniqueConstraint("repository_id", "lower_title"),
    )


class Issue(IdMixin, TimestampMixin, Base):
    __tablename__ = "issues"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(10), default=IssueState.OPEN.value)
    state_reason: Mapped[str | None] = mapped_column(String(20))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    active_lock_reason: Mapped[str | None] = mapped_column(String(20))
    author_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    milestone_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("milestones.id", ondelete="SET NULL"), index=True
    )
    is_pull_request: Mapped[bool] = mapped_column(Boolean, default=False)
    comments_count: Mapped[int] = mapped_column(Integer, default=0)
    closed_at: Mapped[datetime | None] = mapped_column()
    closed_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )

    author: Mapped[User | None] = relationship(foreign_keys=[author_id], lazy="joined")
    closed_by: Mapped[User | None] = relationship(foreign_keys=[closed_by_id])
    milestone: Mapped[Milestone | None] = relationship()
    labels: Mapped[list[Label]] = relationship(
        secondary=issue_labels, order_by=Label.lower_name, lazy="selectin"
    )
    assignees: Mapped[list[User]] = relationship(
        secondary=issue_assignees, order_by=User.lower_username, lazy="selectin"
    )

    __table_args__ = (
        UniqueConstraint("repository_id", "number"),
        Index(None, "repository_id", "state", "is_pull_request"),
        CheckConstraint("state IN ('open', 'closed')", name="state"),
    )

    @property
    def is_open(self) -> bool:
        return self.state == IssueState.OPEN.value

    def __repr__(self) -> str:
        return f"<Issue {self.repository_id}#{self.number}>"


class IssueComment(IdMixin, TimestampMixin, Base):
    __tablename__ = "issue_comments"

    issue_id: Mapped[int] = mapped_column(BigId, ForeignKey("issues.id", ondelete="CASCADE"))
    # Denormalized so `/repos/{o}/{r}/issues/comments` lists without a join and lookups by id are
    # scoped to the repository the caller was authorized for.
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    author_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    body: Mapped[str] = mapped_column(Text, default="")

    author: Mapped[User | None] = relationship(lazy="joined")
    issue: Mapped[Issue] = relationship()

    __table_args__ = (
        Index(None, "issue_id", "created_at"),
        Index(None, "repository_id", "created_at"),
    )


class IssueCommentEdit(IdMixin, Base):
    """One earlier version of a comment's (or an issue's, when `comment_id` is None) body."""

    __tablename__ = "issue_comment_edits"

    issue_id: Mapped[int] = mapped_column(BigId, ForeignKey("issues.id", ondelete="CASCADE"))
    comment_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("issue_comments.id", ondelete="CASCADE"), index=True
    )
    editor_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    previous_body: Mapped[str] = mapped_column(Text, default="")
    edited_at: Mapped[datetime] = mapped_column()

    editor: Mapped[User | None] = relationship(lazy="joined")

    __table_args__ = (Index(None, "issue_id", "comment_id"),)


class Reaction(IdMixin, Base):
    """A reaction on an issue (`comment_id` None) or on one of its comments."""

    __tablename__ = "reactions"

    issue_id: Mapped[int] = mapped_column(BigId, ForeignKey("issues.id", ondelete="CASCADE"))
    comment_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("issue_comments.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    content: Mapped[str] = mapped_column(String(20))
    # 0 for reactions on the issue itself: NULLs are distinct in unique constraints, so the
    # "one reaction of a kind per user" rule keys on this instead of the nullable comment_id.
    target_key: Mapped[int] = mapped_column(BigId, default=0)
    created_at: Mapped[datetime] = mapped_column()

    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("issue_id", "target_key", "user_id", "content"),
        Index(None, "comment_id"),
    )


class IssueEvent(IdMixin, Base):
    """A timeline entry that is not a comment: closed, reopened, labeled, assigned, referenced…

    `data` holds the event's details as JSON text (a label's name and color, a commit id, the
    referencing issue's id) so that the entry survives the label or issue being deleted later.
    """

    __tablename__ = "issue_events"

    issue_id: Mapped[int] = mapped_column(BigId, ForeignKey("issues.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(40))
    data: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column()

    actor: Mapped[User | None] = relationship(lazy="joined")

    __table_args__ = (Index(None, "issue_id", "created_at"),)


issue_mentions = Table(
    "issue_mentions",
    Base.metadata,
    Column("issue_id", BigId, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "user_id"),
)
