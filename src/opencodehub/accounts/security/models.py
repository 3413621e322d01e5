"""Tables of account security: second factors, recovery codes, sudo grants and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from opencodehub.core.time import utcnow
from opencodehub.db.base import Base, BigId, IdMixin, TimestampMixin


class AuditEvent(IdMixin, Base):
    """One security-relevant event. `user_id` is the account the event concerns; `actor_id`
    who caused it (an admin acting on someone else's account, or the user themself)."""

    __tablename__ = "audit_events"

    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("users.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(64))
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index(None, "user_id", "created_at"),
        Index(None, "created_at"),
        Index(None, "event", "created_at"),
    )


class TotpDevice(IdMixin, TimestampMixin, Base):
    """A user's authenticator app. Active once `confirmed_at` is set; the shared secret is
    encrypted with the instance key. `last_step` is the last accepted 30-second time step:
    a code is accepted only for a later step, so no code works twice."""

    __tablename__ = "totp_devices"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    secret_encrypted: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column()
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)


class RecoveryCode(IdMixin, Base):
    """A single-use recovery code; only its SHA-256 is stored."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "user_id"),)


class WebAuthnCredential(IdMixin, TimestampMixin, Base):
    """A registered security key or passkey. `credential_id` is base64url; its SHA-256 carries
    the unique index (credential ids may be long, and index key lengths differ per engine)."""

    __tablename__ = "webauthn_credentials"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    credential_id: Mapped[str] = mapped_column(Text)
    credential_id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(Text)  # COSE key, base64url
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[str] = mapped_column(String(255), default="")
    aaguid: Mapped[str] = mapped_column(String(64), default="")
    last_used_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index(None, "user_id"),)


class WebAuthnChallenge(IdMixin, Base):
    """The outstanding challenge of a registration or an assertion, one per user and purpose."""

    __tablename__ = "webauthn_challenges"

    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))
    challenge: Mapped[str] = mapped_column(String(255))  # base64url
    expires_at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index(None, "user_id", "purpose"),)


class SudoGrant(IdMixin, Base):
    """Sudo mode of one browser session: sensitive actions are allowed until `expires_at`."""

    __tablename__ = "sudo_grants"

    web_session_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("web_sessions.id", ondelete="CASCADE"), unique=True
    )
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
