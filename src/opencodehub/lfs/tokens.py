"""Short-lived HMAC tokens for Git LFS, sent as `Authorization: RemoteAuth <token>`.

Two kinds, each signed with a key of its own (`core.crypto` derives one per purpose), so one can
never stand in for the other:

- **auth** tokens, handed out over SSH by `git-lfs-authenticate`: they speak for a user or a
  deploy key on one repository for one operation (`download` reads; `upload` reads and writes).
  The API re-checks the permission with `authorize()` on every request, so a token outlives
  neither the user's access nor the account.
- **transfer** tokens, put in the batch answer's actions when the app proxies a transfer: they
  allow one method (`PUT`, `GET` or `VERIFY`) on one object of one repository, nothing else.

A token is `{prefix}{base64url(message)}.{signature}`; the message carries the expiry time.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Literal

from opencodehub.core import crypto

AUTH_PREFIX = "lfsa_"
TRANSFER_PREFIX = "lfst_"
_AUTH_PURPOSE = "lfs-auth-token"
_TRANSFER_PURPOSE = "lfs-transfer-token"
# Far above any real token, far below anything that costs to decode.
MAX_TOKEN_LENGTH = 512

Operation = Literal["upload", "download"]
TransferMethod = Literal["PUT", "GET", "VERIFY"]
PrincipalKind = Literal["user", "deploy"]


@dataclass(frozen=True)
class AuthClaims:
    """Who (`kind` user with the user id, or deploy with the read-only flag), where, for what."""

    kind: PrincipalKind
    user_id: int | None
    repository_id: int
    operation: Operation
    deploy_key_read_only: bool
    expires_at: int


@dataclass(frozen=True)
class TransferClaims:
    repository_id: int
    oid: str
    size: int
    method: TransferMethod
    expires_at: int


def _encode(prefix: str, purpose: str, secret: bytes, fields: list[str]) -> str:
    message = "|".join(fields)
    payload = base64.urlsafe_b64encode(message.encode()).rstrip(b"=").decode()
    return f"{prefix}{payload}.{crypto.sign(secret, purpose, message)}"


def _decode(prefix: str, purpose: str, secret: bytes, token: str) -> list[str] | None:
    """The signed fields, or None when the token is malformed, forged or expired (the expiry is
    always the last field)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.startswith(prefix):
        return None
    payload, dot, signature = token[len(prefix) :].partition(".")
    if not dot:
        return None
    try:
        message = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not crypto.verify(secret, purpose, message, signature):
        return None
    fields = message.split("|")
    if not fields[-1].isdigit() or int(fields[-1]) < time.time():
        return None
    return fields


def issue_auth_token(
    secret: bytes,
    *,
    kind: PrincipalKind,
    user_id: int | None,
    repository_id: int,
    operation: Operation,
    deploy_key_read_only: bool,
    expires_in: int,
) -> str:
    expires_at = int(time.time()) + expires_in
    fields = [
        "v1",
        kind,
        str(user_id or 0),
        str(repository_id),
        operation,
        "ro" if deploy_key_read_only else "rw",
        str(expires_at),
    ]
    return _encode(AUTH_PREFIX, _AUTH_PURPOSE, secret, fields)


def read_auth_token(secret: bytes, token: str) -> AuthClaims | None:
    fields = _decode(AUTH_PREFIX, _AUTH_PURPOSE, secret, token)
    if fields is None or len(fields) != 7 or fields[0] != "v1":
        return None
    _, kind, user_id, repository_id, operation, access, expires_at = fields
    if kind not in ("user", "deploy") or operation not in ("upload", "download"):
        return None
    return AuthClaims(
        kind=kind,  # type: ignore[arg-type]
        user_id=int(user_id) if kind == "user" else None,
        repository_id=int(repository_id),
        operation=operation,  # type: ignore[arg-type]
        deploy_key_read_only=access == "ro",
        expires_at=int(expires_at),
    )


def issue_transfer_token(
    secret: bytes,
    *,
    repository_id: int,
    oid: str,
    size: int,
    method: TransferMethod,
    expires_in: int,
) -> str:
    expires_at = int(time.time()) + expires_in
    fields = ["v1", str(repository_id), oid, str(size), method, str(expires_at)]
    return _encode(TRANSFER_PREFIX, _TRANSFER_PURPOSE, secret, fields)


def read_transfer_token(secret: bytes, token: str) -> TransferClaims | None:
    fields = _decode(TRANSFER_PREFIX, _TRANSFER_PURPOSE, secret, token)
    if fields is None or len(fields) != 6 or fields[0] != "v1":
        return None
    _, repository_id, oid, size, method, expires_at = fields
    if method not in ("PUT", "GET", "VERIFY"):
        return None
    return TransferClaims(
        repository_id=int(repository_id),
        oid=oid,
        size=int(size),
        method=method,  # type: ignore[arg-type]
        expires_at=int(expires_at),
    )


def remote_auth_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: RemoteAuth <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "remoteauth" or not value.strip():
        return None
    return value.strip()
