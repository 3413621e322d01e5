"""Tables of code review: reviews, review (line) comments and requested reviewers."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin, str_enum


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
