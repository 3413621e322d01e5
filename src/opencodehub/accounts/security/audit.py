"""The security audit log: who signed in, from where, and what changed on an account.

`record()` is called by every domain that changes something security-relevant. It only adds a
row to the caller's unit of work, so the event commits (or rolls back) with the change itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts.models import User
from opencodehub.accounts.security.models import AuditEvent

# The events OpenCodeHub records, with how the security log pages describe them (others may be
# recorded too and are shown by name; these are the documented ones).
DESCRIPTIONS: dict[str, str] = {
    "user.sign_in": "Signed in",
    "user.failed_sign_in": "Failed sign-in",
    "user.sign_out_everywhere": "Signed out of every session",
    "user.password_set": "Set a first password",
    "password.changed": "Changed the password",
    "sudo.granted": "Confirmed access (sudo mode)",
    "two_factor.enabled": "Turned on two-factor authentication",
    "two_factor.disabled": "Turned off two-factor authentication",
    "two_factor.recovery_code_used": "Signed in with a recovery code",
    "two_factor.recovery_codes_regenerated": "Generated new recovery codes",
    "two_factor.failed": "Failed second factor",
    "security_key.added": "Added a security key",
    "security_key.removed": "Removed a security key",
    "token.created": "Created a personal access token",
    "token.revoked": "Revoked a personal access token",
    "jwt.issued": "Issued a JWT access token",
    "ssh_key.added": "Added an SSH key",
    "ssh_key.removed": "Removed an SSH key",
    "sso.sign_in": "Signed in with an external provider",
    "sso.sign_in_failed": "Failed sign-in with an external provider",
    "sso.signup": "Created the account through an external provider",
    "sso.link": "Linked an external account",
    "sso.unlink": "Unlinked an external account",
    "oauth.authorize": "Authorized an OAuth app",
    "oauth.revoke": "Revoked an OAuth app's access",
    "oauth_app.create": "Registered an OAuth app",
    "oauth_app.secret_created": "Generated an OAuth app client secret",
    "oauth_app.delete": "Deleted an OAuth app",
}
EVENTS = tuple(DESCRIPTIONS)


def describe(event: str) -> str:
    """The readable description of `event`; its name when it is not a documented one."""
    return DESCRIPTIONS.get(event, event)


MAX_DETAIL_LENGTH = 500


def _clean(value: Any) -> Any:
    """Details are JSON; long strings are cut so a hostile value cannot bloat the log."""
    if isinstance(value, str):
        return value[:MAX_DETAIL_LENGTH]
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_clean(item) for item in list(value)[:50]]
    if isinstance(value, dict):
        return {str(key)[:64]: _clean(item) for key, item in list(value.items())[:50]}
    return str(value)[:MAX_DETAIL_LENGTH]


def request_ip(request: Request | None) -> str:
    if request is None or request.client is None:
        return ""
    return request.client.host[:64]


def record(
    session: Session,
    user: User | None,
    event: str,
    request: Request | None = None,
    *,
    actor: User | None = None,
    **details: Any,
) -> None:
    """Log `event` about `user` (None for, say, a failed sign-in to an unknown name).

    `actor` defaults to the user themself. `details` must never hold a secret.
    """
    user_id = user.id if user is not None else None
    actor_id = actor.id if actor is not None else user_id
    session.add(
        AuditEvent(
            user_id=user_id,
            actor_id=actor_id,
            event=event[:64],
            ip_address=request_ip(request),
            user_agent=(request.headers.get("user-agent", "") if request is not None else "")[:512],
            details=_clean(details),
        )
    )


def list_events(
    session: Session,
    *,
    user_id: int | None = None,
    event: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[AuditEvent]:
    statement = select(AuditEvent)
    if user_id is not None:
        statement = statement.where(AuditEvent.user_id == user_id)
    if event:
        statement = statement.where(AuditEvent.event == event)
    statement = (
        statement.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(statement))


def as_json(event: AuditEvent, usernames: dict[int, str] | None = None) -> dict[str, Any]:
    from opencodehub.core.time import isoformat

    usernames = usernames or {}
    return {
        "id": event.id,
        "action": event.event,
        "user_id": event.user_id,
        "user": usernames.get(event.user_id) if event.user_id else None,
        "actor_id": event.actor_id,
        "actor": usernames.get(event.actor_id) if event.actor_id else None,
        "actor_ip": event.ip_address,
        "user_agent": event.user_agent,
        "details": event.details or {},
        "created_at": isoformat(event.created_at),
    }
