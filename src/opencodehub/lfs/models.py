"""LFS records: objects (content-addressed, stored once), which repositories may use them, and
file locks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.core.time import utcnow
from opencodehub.db.base import Base, BigId, IdMixin


class LFSObject(IdMixin, Base):
    """One stored object, at storage key `lfs/{oid[0:2]}/{oid[2:4]}/{oid}`, whatever repositories
    link to it. It exists only once its content was checked against the oid."""

    __tablename__ = "lfs_objects"

    oid: Mapped[str] = mapped_column(String(64), unique=True)  # lowercase hex SHA-256
    size: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class RepositoryLFSObject(IdMixin, Base):
    """A repository may download an object only through one of these links (or one of the
    repository it was forked from): knowing an oid never grants its content."""

    __tablename__ = "repository_lfs_objects"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    oid: Mapped[str] = mapped_column(String(64), ForeignKey("lfs_objects.oid", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("repository_id", "oid"), Index(None, "oid"))


class LFSLock(IdMixin, Base):
    """A file lock. Paths are compared byte for byte (git is case-sensitive); the unique key is
    the path's SHA-256, so it works on every engine whatever the column collation and length."""

    __tablename__ = "lfs_locks"

    repository_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    path: Mapped[str] = mapped_column(Text)
    path_hash: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("repository_id", "path_hash"),)
