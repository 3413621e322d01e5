"""Notification threads, per-repository watch settings and per-thread subscriptions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin


class Reason(enum.StrEnum):
    """GitHub's notification reasons (the subset OpenCodeHub produces)."""

    SUBSCRIBED = "subscribed"
    MENTION = "mention"
    ASSIGN = "assign"
    REVIEW_REQUESTED = "review_requested"
    AUTHOR = "author"
    COMMENT = "comment"
    STATE_CHANGE = "state_change"
    MANUAL = "manual"


# Reasons that make a thread "participating" (GitHub: you were directly involved).
PARTICIPATING_REASONS = frozenset(
    {
        Reason.MENTION.value,
        Reason.ASSIGN.value,
        Reason.REVIEW_REQUESTED.value,
        Reason.AUTHOR.value,
        Reason.COMMENT.value,
        Reason.STATE_CHANGE.value,
        Reason.MANUAL.value,
    }
)


class WatchLevel(enum.StrEnum):
    WATCHING = "watching"
    NOT_WATCHING = "not_watching"  # participating and @mentions only, GitHub's default
    IGNORING = "ignoring"


class NotificationThread(IdMixin, TimestampMixin, Base):
    """One user's inbox entry for one issue or pull request."""

    __tablename__ = "notification_threads"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    issue_id: Mapped[int] = mapped_column(BigId, ForeignKey("issues.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(30))
    unread: Mapped[bool] = mapped_column(Boolean, default=True)
    last_read_at: Mapped[datetime | None] = mapped_column()
    # When something last happened on the thread (what the inbox sorts by).
    last_updated_at: Mapped[datetime] = mapped_column()
    # The comment that caused the last update, for `latest_comment_url`.
    latest_comment_id: Mapped[int | None] = mapped_column(BigId)
    # Hidden from the inbox (GitHub's "done"); a new update brings it back.
    done: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("user_id", "issue_id"),
        Index(None, "user_id", "unread", "last_updated_at"),
        Index(None, "issue_id"),
    )


class ThreadSubscription(IdMixin, TimestampMixin, Base):
    """A user's subscription to an issue: implicit (authored, commented, mentioned, assigned)
    or explicit; `ignored` mutes the thread even when watching the repository."""

    __tablename__ = "thread_subscriptions"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    issue_id: Mapped[int] = mapped_column(BigId, ForeignKey("issues.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    reason: Mapped[str] = mapped_column(String(30))
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    ignored: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("user_id", "issue_id"), Index(None, "issue_id"))


class RepositoryWatch(IdMixin, TimestampMixin, Base):
    __tablename__ = "repository_watches"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    level: Mapped[str] = mapped_column(String(20), default=WatchLevel.WATCHING.value)

    __table_args__ = (
        UniqueConstraint("user_id", "repository_id"),
        Index(None, "repository_id", "level"),
    )


class NotificationSettings(Base):
    """A user's delivery choices (the `/settings/notifications` page)."""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class NotificationEmail(IdMixin, Base):
    """An email waiting for the `notification-email` job (an outbox: the row commits with the
    change that caused it, and the job sends it afterwards, off the request path)."""

    __tablename__ = "notification_emails"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    to_address: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(String(400), default="")
    reason: Mapped[str] = mapped_column(String(30), default="")
    actor_name: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (Index(None, "sent_at", "next_attempt_at"),)
