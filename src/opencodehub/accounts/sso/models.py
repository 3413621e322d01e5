"""Sign-in sources (GitHub, GitLab, OpenID Connect providers), the identities linked through them,
and the short-lived records of sign-ins in progress."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.core.time import utcnow
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin, str_enum


class AuthSourceKind(enum.StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    OIDC = "oidc"


class AuthSource(IdMixin, TimestampMixin, Base):
    """A provider people may sign in with, configured by a site admin."""

    __tablename__ = "auth_sources"

    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[AuthSourceKind] = mapped_column(str_enum(AuthSourceKind, "auth_source_kind"))
    client_id: Mapped[str] = mapped_column(String(255))
    # Fernet ciphertext (core.crypto.encrypt); the plaintext never reaches the database.
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    discovery_url: Mapped[str] = mapped_column(String(1024), default="")
    # GitHub: the web base (https://github.com); GitLab: the instance (https://gitlab.com).
    base_url: Mapped[str] = mapped_column(String(1024), default="")
    # GitHub only: the REST API root (https://api.github.com).
    api_url: Mapped[str] = mapped_column(String(1024), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Comma-separated lower-case domains; empty allows every domain.
    allowed_domains: Mapped[str] = mapped_column(String(1024), default="")
    # A GitHub organization or GitLab group (full path) whose members alone may sign in.
    required_group: Mapped[str] = mapped_column(String(255), default="")
    # {provider group: OpenCodeHub organization login}: members join those organizations.
    org_mapping: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)

    @property
    def domain_list(self) -> list[str]:
        return [domain for domain in self.allowed_domains.split(",") if domain]

    def __repr__(self) -> str:
        return f"<AuthSource {self.slug!r} kind={self.kind}>"


class ExternalIdentity(IdMixin, TimestampMixin, Base):
    """An account at a provider, linked to one OpenCodeHub user."""

    __tablename__ = "external_identities"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(BigId, ForeignKey("auth_sources.id", ondelete="CASCADE"))
    # The provider's stable id (OIDC `sub`, GitHub/GitLab numeric user id), never the login.
    subject: Mapped[str] = mapped_column(String(255))
    login: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()

    source: Mapped[AuthSource] = relationship(lazy="joined")
    user: Mapped[User] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("source_id", "subject"),
        UniqueConstraint("source_id", "user_id"),
        Index(None, "user_id"),
    )


class SSOAuthRequest(IdMixin, Base):
    """A redirect to a provider that has not come back yet. Deleted when the callback uses it,
    so a `state` works once; the browser must also present the same value in a cookie."""

    __tablename__ = "sso_auth_requests"

    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source_id: Mapped[int] = mapped_column(BigId, ForeignKey("auth_sources.id", ondelete="CASCADE"))
    # Set when a signed-in user links another provider; the callback must come from them.
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    # "sign_in", "link" (user_id set) or "sudo" (user_id set: the user re-authenticates with an
    # identity already linked, to enter sudo mode).
    purpose: Mapped[str] = mapped_column(String(16), default="sign_in")
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    next_path: Mapped[str] = mapped_column(String(2048), default="/")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class SSOPendingSignIn(IdMixin, Base):
    """A provider account that signed in but is linked to nobody yet: it waits for the person to
    pick a username or to prove an existing account with its password."""

    __tablename__ = "sso_pending_sign_ins"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source_id: Mapped[int] = mapped_column(BigId, ForeignKey("auth_sources.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    login: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    full_name: Mapped[str] = mapped_column(String(255), default="")
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    next_path: Mapped[str] = mapped_column(String(2048), default="/")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()

    source: Mapped[AuthSource] = relationship(lazy="joined")
