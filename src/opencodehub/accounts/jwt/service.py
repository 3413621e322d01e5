"""Short-lived JWT access tokens: issued in exchange for a personal access token or a browser
session, accepted wherever a token is (`Authorization: Bearer …`).

A JWT is signed with EdDSA (Ed25519) and carries `sub` (user id), `username`, `scope` (space
separated, never more than the exchanging credential had), `iat`/`nbf`/`exp` (at most an hour),
`jti`, `iss` (the instance's base URL) and `aud` (its API). It is bound to the credential it was
exchanged for (`tid`, the token's id, or `sid`, the session's): revoking that credential, or
signing out everywhere, ends the JWT too, and a JWT never carries a scope its credential lacks.
"""

from __future__ import annotations

import re
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import KNOWN_SCOPES, SCOPE_IMPLIES, Actor, expand_scopes
from opencodehub.accounts.jwt import keys
from opencodehub.accounts.models import AccessToken, WebSession
from opencodehub.config import Settings, get_settings
from opencodehub.core.errors import Forbidden, ValidationFailed
from opencodehub.core.time import utcnow

ALGORITHM = "EdDSA"
MAX_LIFETIME = keys.MAX_TOKEN_LIFETIME
DEFAULT_LIFETIME = MAX_LIFETIME
MIN_LIFETIME = 60
LEEWAY_SECONDS = 30
MAX_JWT_LENGTH = 8192
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: dict[str, Any]

    @property
    def scopes(self) -> list[str]:
        return self.claims["scope"].split() if self.claims["scope"] else []


def issuer(settings: Settings) -> str:
    return settings.effective_base_url


def audience(settings: Settings) -> str:
    return f"{settings.effective_base_url}/api/v3"


def issue(
    settings: Settings,
    actor: Actor,
    *,
    scopes: list[str] | None = None,
    expires_in: int | None = None,
    web_session_id: int | None = None,
) -> IssuedToken:
    """A JWT for `actor`, who proved a personal access token (`actor.token_id`) or a browser
    session (`web_session_id`). Requested scopes beyond the credential's are refused."""
    user = actor.user
    if user is None:
        raise Forbidden("Sign in or send a personal access token to get a JWT.")
    binding: dict[str, Any]
    if actor.method == "token" and actor.token_id is not None:
        allowed = actor.scopes or frozenset()
        binding = {"tid": actor.token_id}
    elif actor.method == "session" and web_session_id is not None:
        allowed = expand_scopes(KNOWN_SCOPES)
        binding = {"sid": web_session_id}
    else:
        raise Forbidden("A JWT can only be exchanged for a personal access token or a session.")
    if scopes is None:
        if actor.method == "token":
            chosen = sorted(scope for scope in allowed if _top_level(scope, allowed))
        else:
            chosen = sorted(SCOPE_IMPLIES)
    else:
        unknown = sorted({scope for scope in scopes if scope not in KNOWN_SCOPES})
        if unknown:
            raise ValidationFailed.invalid(
                "JWT", "scopes", f"unknown scope(s): {', '.join(unknown)[:200]}"
            )
        exceeding = sorted(set(expand_scopes(scopes)) - allowed)
        if exceeding:
            raise ValidationFailed.invalid(
                "JWT",
                "scopes",
                f"the credential lacks the scope(s): {', '.join(exceeding)}",
            )
        chosen = sorted(set(scopes))
    lifetime = DEFAULT_LIFETIME if expires_in is None else expires_in
    if lifetime < MIN_LIFETIME:
        raise ValidationFailed.invalid(
            "JWT", "expires_in", f"must be at least {MIN_LIFETIME} seconds"
        )
    lifetime = min(lifetime, MAX_LIFETIME)
    ring = keys.keyring(settings.data_dir)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer(settings),
        "aud": audience(settings),
        "sub": str(user.id),
        "username": user.username,
        "scope": " ".join(chosen),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
        **binding,
    }
    token = jwt.encode(
        claims,
        ring.private_key,
        algorithm=ALGORITHM,
        headers={"kid": ring.current_kid, "typ": "at+jwt"},
    )
    return IssuedToken(token, claims)


def _top_level(scope: str, allowed: frozenset[str]) -> bool:
    """Whether no other allowed scope implies `scope` (so the list stays short)."""
    return not any(scope in SCOPE_IMPLIES.get(other, ()) for other in allowed if other != scope)


_JWT_RE = re.compile(r"\AeyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")


def looks_like_jwt(secret: str) -> bool:
    """Three base64url segments, the first a JSON object (`eyJ` is `{"` encoded)."""
    return len(secret) <= MAX_JWT_LENGTH and _JWT_RE.match(secret) is not None


def verify(settings: Settings, secret: str) -> dict[str, Any] | None:
    """The claims of a JWT this instance signed and that is valid now; None otherwise.

    The algorithm is pinned (EdDSA): `alg: none`, HS256 keyed with the public key and any other
    substitution fail. The key is chosen by `kid` among the current and retired keys only.
    """
    if not looks_like_jwt(secret):
        return None
    try:
        header = jwt.get_unverified_header(secret)
    except jwt.PyJWTError:
        return None
    if header.get("alg") != ALGORITHM:
        return None
    kid = header.get("kid")
    ring = keys.keyring(settings.data_dir)
    public_key = ring.public_keys.get(kid) if isinstance(kid, str) else None
    if public_key is None:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            secret,
            public_key,
            algorithms=[ALGORITHM],
            audience=audience(settings),
            issuer=issuer(settings),
            leeway=LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError:
        return None
    now = time.time()
    try:
        issued_at, expires_at = int(claims["iat"]), int(claims["exp"])
    except (TypeError, ValueError):
        return None
    # A token this instance issued never lives longer than MAX_LIFETIME nor starts in the future.
    if issued_at > now + LEEWAY_SECONDS or expires_at - issued_at > MAX_LIFETIME:
        return None
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or any(item not in KNOWN_SCOPES for item in scope.split()):
        return None
    return claims


# Token resolvers get only (session, secret); the settings that matter here (data dir, base URL)
# are found through the session's engine. `create_app` binds its settings to its database engine;
# a process with a single configuration falls back to the global settings.
_settings_by_engine: weakref.WeakKeyDictionary[Engine, Settings] = weakref.WeakKeyDictionary()


def bind_settings(engine: Engine, settings: Settings) -> None:
    _settings_by_engine[engine] = settings


def _settings_for(session: Session) -> Settings:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
    settings = _settings_by_engine.get(engine) if engine is not None else None
    return settings if settings is not None else get_settings()


def actor_for_jwt(session: Session, secret: str, settings: Settings | None = None) -> Actor | None:
    """The actor a JWT stands for, or None (quickly, for anything that is not a JWT)."""
    if not looks_like_jwt(secret):
        return None
    claims = verify(settings or _settings_for(session), secret)
    if claims is None:
        return None
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError):
        return None
    scopes = claims["scope"].split()
    token_id = claims.get("tid")
    session_id = claims.get("sid")
    now = utcnow()
    if isinstance(token_id, int) and session_id is None:
        token = session.scalar(select(AccessToken).where(AccessToken.id == token_id))
        if (
            token is None
            or token.user_id != user_id
            or token.revoked_at is not None
            or (token.expires_at is not None and token.expires_at <= now)
            or not token.user.is_active
        ):
            return None
        # The issuing token may have lost scopes since (or the JWT claims ones it never had).
        if not set(expand_scopes(scopes)) <= expand_scopes(token.scope_list):
            return None
        user = token.user
    elif isinstance(session_id, int) and token_id is None:
        web_session = session.scalar(select(WebSession).where(WebSession.id == session_id))
        if (
            web_session is None
            or web_session.user_id != user_id
            or web_session.expires_at <= now
            or not web_session.user.is_active
        ):
            return None
        user = web_session.user
    else:
        return None
    return Actor(
        user=user,
        method="jwt",
        scopes=expand_scopes(scopes),
        token_id=token_id if isinstance(token_id, int) else None,
    )
