"""OAuth apps registered by users and organizations, the grants people gave them, and the codes
and tokens issued under those grants. Every secret is stored as its SHA-256 digest only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from opencodehub.accounts.models import User
from opencodehub.core.time import utcnow
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin


def _split(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


class OAuthApp(IdMixin, TimestampMixin, Base):
    """A third-party tool that may ask people for access, owned by a user or an organization."""

    __tablename__ = "oauth_apps"

    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    homepage_url: Mapped[str] = mapped_column(String(1024))
    description: Mapped[str] = mapped_column(Text, default="")
    # One URL a line; the redirect_uri of a request must equal one of them exactly.
    callback_urls: Mapped[str] = mapped_column(Text)
    # A native or single-page app cannot keep a secret: it must use PKCE instead.
    public_client: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )

    owner: Mapped[User] = relationship(foreign_keys=[owner_id], lazy="joined")

    __table_args__ = (Index(None, "owner_id"),)

    @property
    def callback_url_list(self) -> list[str]:
        return [line for line in self.callback_urls.splitlines() if line]


class OAuthAppSecret(IdMixin, Base):
    """A client secret; an app may hold several at once so that it can rotate them."""

    __tablename__ = "oauth_app_secrets"

    app_id: Mapped[int] = mapped_column(BigId, ForeignKey("oauth_apps.id", ondelete="CASCADE"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_eight: Mapped[str] = mapped_column(String(8))
    created_by_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index(None, "app_id"),)


class OAuthGrant(IdMixin, TimestampMixin, Base):
    """What a person allowed an app: a later request for the same or fewer scopes needs no
    consent. Revoking it revokes every token issued under it."""

    __tablename__ = "oauth_grants"

    app_id: Mapped[int] = mapped_column(BigId, ForeignKey("oauth_apps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    scopes: Mapped[str] = mapped_column(String(1024), default="")

    app: Mapped[OAuthApp] = relationship(lazy="joined")

    __table_args__ = (UniqueConstraint("app_id", "user_id"), Index(None, "user_id"))

    @property
    def scope_list(self) -> list[str]:
        return _split(self.scopes)


class OAuthCode(IdMixin, Base):
    """An authorization code: single use, short-lived, bound to its client, redirect URI and
    PKCE challenge. Kept after use (`used_at`) so that a replay can be recognised."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[int] = mapped_column(BigId, ForeignKey("oauth_apps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    code_challenge: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()

    @property
    def scope_list(self) -> list[str]:
        return _split(self.scopes)


class OAuthToken(IdMixin, Base):
    """An access token and its refresh token. A refresh replaces the row with a new one of the
    same `family`; presenting a replaced refresh token again revokes the whole family."""

    __tablename__ = "oauth_tokens"

    app_id: Mapped[int] = mapped_column(BigId, ForeignKey("oauth_apps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    code_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("oauth_codes.id", ondelete="SET NULL")
    )
    family: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_last_eight: Mapped[str] = mapped_column(String(8))
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    refresh_expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()

    app: Mapped[OAuthApp] = relationship(lazy="joined")
    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")

    __table_args__ = (Index(None, "app_id", "user_id"), Index(None, "family"))

    @property
    def scope_list(self) -> list[str]:
        return _split(self.scopes)
