"""Accounts: users and organizations (one namespace, as on GitHub), emails, teams, tokens, keys,
web sessions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin, str_enum


class AccountKind(enum.StrEnum):
    USER = "user"
    ORGANIZATION = "organization"


class OrgRole(enum.StrEnum):
    OWNER = "owner"
    MEMBER = "member"


class Permission(enum.StrEnum):
    """GitHub's repository permission levels, weakest first."""

    READ = "read"
    TRIAGE = "triage"
    WRITE = "write"
    MAINTAIN = "maintain"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _PERMISSION_RANK[self]

    def __ge__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Permission):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Permission):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Permission):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Permission):
            return NotImplemented
        return self.rank < other.rank


_PERMISSION_RANK = {
    Permission.READ: 1,
    Permission.TRIAGE: 2,
    Permission.WRITE: 3,
    Permission.MAINTAIN: 4,
    Permission.ADMIN: 5,
}


class User(IdMixin, TimestampMixin, Base):
    """A user or an organization. Both own repositories and share one namespace of names."""

    __tablename__ = "users"

    kind: Mapped[AccountKind] = mapped_column(
        str_enum(AccountKind, "account_kind"), default=AccountKind.USER
    )
    username: Mapped[str] = mapped_column(String(39))
    # Names are unique case-insensitively on every engine, so the lowered form carries the index.
    lower_username: Mapped[str] = mapped_column(String(39), unique=True)
    full_name: Mapped[str] = mapped_column(String(255), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    company: Mapped[str] = mapped_column(String(255), default="")
    location: Mapped[str] = mapped_column(String(255), default="")
    website: Mapped[str] = mapped_column(String(255), default="")
    # The address shown on the profile (GitHub's `email` field): for a user one of their own
    # addresses or empty; for an organization its contact address (not unique, not verified).
    public_email: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_site_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    avatar_key: Mapped[str | None] = mapped_column(String(255))
    last_login_at: Mapped[datetime | None] = mapped_column()

    emails: Mapped[list[Email]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def is_organization(self) -> bool:
        return self.kind == AccountKind.ORGANIZATION

    @property
    def primary_email(self) -> str | None:
        for email in self.emails:
            if email.is_primary:
                return email.email
        return None

    def __repr__(self) -> str:
        return f"<User {self.username!r} kind={self.kind}>"


class Email(IdMixin, TimestampMixin, Base):
    __tablename__ = "emails"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(255))
    lower_email: Mapped[str] = mapped_column(String(255), unique=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(back_populates="emails")

    __table_args__ = (Index(None, "user_id"),)


class OrgMembership(IdMixin, TimestampMixin, Base):
    __tablename__ = "org_memberships"

    org_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[OrgRole] = mapped_column(str_enum(OrgRole, "org_role"), default=OrgRole.MEMBER)

    __table_args__ = (UniqueConstraint("org_id", "user_id"), Index(None, "user_id"))


class Team(IdMixin, TimestampMixin, Base):
    __tablename__ = "teams"

    org_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    permission: Mapped[Permission] = mapped_column(
        str_enum(Permission, "permission"), default=Permission.READ
    )
    privacy: Mapped[str] = mapped_column(String(20), default="closed")

    __table_args__ = (UniqueConstraint("org_id", "slug"),)


class TeamMember(IdMixin, TimestampMixin, Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(BigId, ForeignKey("teams.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20), default="member")

    __table_args__ = (UniqueConstraint("team_id", "user_id"), Index(None, "user_id"))


class AccessToken(IdMixin, TimestampMixin, Base):
    """A personal access token. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "access_tokens"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_last_eight: Mapped[str] = mapped_column(String(8))
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (Index(None, "user_id"),)

    @property
    def scope_list(self) -> list[str]:
        return [scope for scope in self.scopes.split(",") if scope]


class SSHKey(IdMixin, TimestampMixin, Base):
    """A user's SSH key or, with `repository_id` set, a repository's deploy key.

    The SHA256 fingerprint is unique across the instance so that authentication is one indexed
    lookup and identifies exactly one principal.
    """

    __tablename__ = "ssh_keys"

    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    repository_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("repositories.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(255))
    key_type: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)  # "type base64" without the comment
    fingerprint: Mapped[str] = mapped_column(String(100), unique=True)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index(None, "user_id"), Index(None, "repository_id"))


class WebSession(IdMixin, TimestampMixin, Base):
    """A signed-in browser. The cookie holds a random id; the table holds only its hash."""

    __tablename__ = "web_sessions"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    last_seen_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()

    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (Index(None, "user_id"),)
