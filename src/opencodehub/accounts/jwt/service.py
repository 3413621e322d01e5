"""Short-lived JWT access tokens: issued in exchange for a personal access token or a browser
session, accepted wherever a token is (`Authorization: Bearer …`).

A JWT is signed with EdDSA (Ed25519) and carries `sub` (user id), `username`, `scope` (space
separated, never more than the exchanging credential had), `iat`/`nbf`/`exp` (at most an hour),
`jti`, `iss` (the instance's base URL) and `aud` (its API). It is bound to the credential it was
exchanged for (`tid`, the token's id, or `sid`, the session's): revoking that credential, or
signing out everywhere, ends the JWT too, and a JWT never carries a scope its credential lacks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, select
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
    import jwt  # with `cryptography`, loaded when the first token is issued, not with the app

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


_HEADER_KEYS = frozenset({"alg", "kid", "typ"})
# RFC 9068's media type, which `issue` sets, or the generic one.
_TYPES = frozenset({"at+jwt", "JWT"})


def _segment(text: str) -> bytes | None:
    """A base64url segment's bytes, only in its one canonical spelling (unpadded, no stray
    trailing bits), so a token has exactly one valid string form. The characters were already
    checked by `looks_like_jwt`."""
    if len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != text.encode("ascii"):
        return None
    return raw


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _int_claim(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _VerifiedSignatures:
    """JWTs whose signature this process checked in the last `ttl` seconds.

    A program sends the same JWT with every request until it expires, and the Ed25519 check is
    most of a JWT's cost. The key is the whole token, signature included, so only a
    byte-identical token skips the check; its claims (expiry above all) are still checked on
    every use, and its key must still be one the key ring verifies with. An entry lives at most
    `ttl` seconds, so a key removed from the ring by another process stops being honoured here
    within that time, as a password remembered by git's credential cache does.
    """

    def __init__(self, ttl: float = 60.0, size: int = 4096) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, token: str) -> bool:
        with self._lock:
            checked_at = self._entries.get(token)
            if checked_at is None:
                return False
            if time.monotonic() - checked_at > self._ttl:
                del self._entries[token]
                return False
            return True

    def remember(self, token: str) -> None:
        with self._lock:
            self._entries[token] = time.monotonic()
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_signatures = _VerifiedSignatures()


def verify(settings: Settings, secret: str) -> dict[str, Any] | None:
    """The claims of a JWT this instance signed and that is valid now; None otherwise.

    The algorithm is pinned (EdDSA): `alg: none`, HS256 keyed with the public key and any other
    substitution fail. The key is chosen by `kid` among the current and retired keys only.

    This runs on every API request that carries a JWT, so it does the JWS work itself rather
    than through PyJWT, whose pure-Python character checks of each segment cost more than the
    Ed25519 signature check: the header and payload are decoded once, the signature is checked
    with the key ring's cached `Ed25519PublicKey`, and the claims are checked as strictly as
    PyJWT does for the tokens `issue` makes, or more strictly (only the header fields `issue`
    sets, an access-token `typ`, integer times, a string `aud` equal to ours).
    `tests/accounts/jwt/test_verify.py` holds it to PyJWT's verdicts.
    """
    if not looks_like_jwt(secret):
        return None
    header_b64, payload_b64, signature_b64 = secret.split(".")
    header_raw = _segment(header_b64)
    header = _json_object(header_raw) if header_raw is not None else None
    if (
        header is None
        or not header.keys() <= _HEADER_KEYS
        or header.get("alg") != ALGORITHM
        or header.get("typ", "JWT") not in _TYPES
    ):
        return None
    kid = header.get("kid")
    if not isinstance(kid, str):
        return None
    public_key = keys.public_key(settings.data_dir, kid)
    signature = _segment(signature_b64)
    if public_key is None or signature is None:
        return None
    if not verified_signatures.seen(secret):
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(signature, f"{header_b64}.{payload_b64}".encode("ascii"))
        except InvalidSignature:
            return None
        verified_signatures.remember(secret)
    payload_raw = _segment(payload_b64)
    claims = _json_object(payload_raw) if payload_raw is not None else None
    if claims is None or any(claims.get(name) is None for name in _REQUIRED_CLAIMS):
        return None
    issued_at = _int_claim(claims, "iat")
    not_before = _int_claim(claims, "nbf")
    expires_at = _int_claim(claims, "exp")
    if issued_at is None or not_before is None or expires_at is None:
        return None
    now = time.time()
    if (
        expires_at <= now - LEEWAY_SECONDS
        or not_before > now + LEEWAY_SECONDS
        # A token this instance issued never starts in the future nor lives longer than
        # MAX_LIFETIME.
        or issued_at > now + LEEWAY_SECONDS
        or expires_at - issued_at > MAX_LIFETIME
    ):
        return None
    if claims["iss"] != issuer(settings) or claims["aud"] != audience(settings):
        return None
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
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


# Built once: one of them runs on every request that carries a JWT.
_TOKEN_BY_ID = select(AccessToken).where(AccessToken.id == bindparam("token_id"))
_WEB_SESSION_BY_ID = select(WebSession).where(WebSession.id == bindparam("session_id"))


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
        token = session.scalar(_TOKEN_BY_ID, {"token_id": token_id})
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
        web_session = session.scalar(_WEB_SESSION_BY_ID, {"session_id": session_id})
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
