"""OpenCodeHub as an OAuth 2 provider (RFC 6749, PKCE per RFC 7636, revocation per RFC 7009),
shaped like GitHub's OAuth apps: registered apps, consent, codes, expiring and refreshable
tokens that act only within their scopes and the authorizing user's own rights.

Errors of the protocol are `OAuthError` (an RFC 6749 `error` code and a description). Errors that
must never be sent back to the client's redirect URI (unknown client, unregistered redirect
URI) are `AuthorizeRefused`: the person sees them on an error page instead.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import KNOWN_SCOPES, SCOPE_IMPLIES, Actor, expand_scopes
from opencodehub.accounts.models import User
from opencodehub.accounts.oauthapps.models import (
    OAuthApp,
    OAuthAppSecret,
    OAuthCode,
    OAuthGrant,
    OAuthToken,
)
from opencodehub.accounts.security import audit
from opencodehub.core.crypto import (
    constant_time_equals,
    pkce_s256_challenge,
    random_token,
    sha256_hex,
)
from opencodehub.core.errors import FieldError, NotFound, ValidationFailed
from opencodehub.core.time import utcnow
from opencodehub.repos.authz import authorize

ACCESS_PREFIX = "ocho_"
REFRESH_PREFIX = "ochr_"
_ALPHABET = string.ascii_letters + string.digits
_BODY_LENGTH = 40
CODE_TTL = timedelta(minutes=10)
ACCESS_TTL = timedelta(hours=8)  # GitHub's expiring user tokens
REFRESH_TTL = timedelta(days=184)  # GitHub's six months
MAX_CALLBACK_URLS = 10
MAX_SECRETS = 5  # GitHub's limit per app
_PKCE_RE = re.compile(r"\A[A-Za-z0-9._~-]{43,128}\Z")
_CLIENT_ID_RE = re.compile(r"\A[0-9a-f]{20}\Z")
_LOOPBACK_NAMES = frozenset({"localhost"})
# Scopes only a site admin holds rights for; nobody else may hand them to an app.
_ADMIN_ONLY_SCOPES = frozenset({"admin:enterprise"})

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "repo": "Full control of your repositories, public and private",
    "repo:status": "Read and write commit statuses",
    "repo_deployment": "Access deployment statuses",
    "public_repo": "Read and write your public repositories",
    "repo:invite": "Accept and decline repository invitations",
    "user": "Read and change your profile",
    "read:user": "Read your profile data",
    "user:email": "Read your email addresses",
    "user:follow": "Follow and unfollow people",
    "admin:org": "Fully manage your organizations, their teams and members",
    "write:org": "Read and change organization and team membership",
    "read:org": "Read organization and team membership",
    "admin:public_key": "Fully manage your SSH keys",
    "write:public_key": "Add and read your SSH keys",
    "read:public_key": "Read your SSH keys",
    "admin:repo_hook": "Fully manage repository webhooks",
    "write:repo_hook": "Add and read repository webhooks",
    "read:repo_hook": "Read repository webhooks",
    "admin:gpg_key": "Fully manage your GPG keys",
    "write:gpg_key": "Add and read your GPG keys",
    "read:gpg_key": "Read your GPG keys",
    "write:packages": "Upload and read packages",
    "read:packages": "Read packages",
    "workflow": "Change CI workflow files",
    "delete_repo": "Delete your repositories",
    "gist": "Create gists",
    "notifications": "Read and manage your notifications",
    "admin:enterprise": "Administer this OpenCodeHub site",
}


class OAuthError(Exception):
    """An RFC 6749 error: sent to the client (JSON or form) or to its redirect URI."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status_code = status_code

    def as_dict(self) -> dict[str, str]:
        return {
            "error": self.error,
            "error_description": self.description,
            "error_uri": "https://docs.github.com/apps/oauth-apps",
        }


class AuthorizeRefused(Exception):
    """An authorization request that cannot be trusted with a redirect: shown to the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _new_secret(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))


def _shaped(value: str, prefix: str) -> bool:
    return (
        isinstance(value, str)
        and value.startswith(prefix)
        and len(value) == len(prefix) + _BODY_LENGTH
        and value[len(prefix) :].isalnum()
        and value.isascii()
    )


# Registered apps -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_url(value: str, field: str, *, callback: bool) -> str:
    value = (value or "").strip()
    if not value or len(value) > 1024 or any(ord(char) < 0x21 for char in value):
        raise ValidationFailed.invalid("OAuthApp", field, "must be a URL without spaces")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError:
        raise ValidationFailed.invalid("OAuthApp", field, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed.invalid("OAuthApp", field, "must be an http or https URL")
    if callback:
        if parts.fragment:
            raise ValidationFailed.invalid("OAuthApp", field, "must not contain a fragment (#)")
        if parts.scheme == "http" and not is_loopback(host):
            raise ValidationFailed.invalid(
                "OAuthApp", field, "must use https (http is allowed only for localhost)"
            )
    return value


def _validate_fields(
    name: str, homepage_url: str, description: str, callback_urls: list[str] | str
) -> dict[str, Any]:
    errors: list[FieldError] = []
    name = (name or "").strip()
    if not name or len(name) > 100 or any(ord(char) < 0x20 for char in name):
        errors.append(FieldError("OAuthApp", "name", "invalid", "must be 1 to 100 characters"))
    description = (description or "").strip()
    if len(description) > 400 or "\x00" in description:
        errors.append(
            FieldError("OAuthApp", "description", "invalid", "must be at most 400 characters")
        )
    try:
        homepage_url = validate_url(homepage_url, "homepage_url", callback=False)
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    if isinstance(callback_urls, str):
        callback_urls = callback_urls.splitlines()
    urls: list[str] = []
    try:
        for url in callback_urls:
            if url.strip():
                checked = validate_url(url, "callback_urls", callback=True)
                if checked not in urls:
                    urls.append(checked)
        if not urls:
            raise ValidationFailed.invalid("OAuthApp", "callback_urls", "give at least one URL")
        if len(urls) > MAX_CALLBACK_URLS:
            raise ValidationFailed.invalid(
                "OAuthApp", "callback_urls", f"at most {MAX_CALLBACK_URLS} URLs"
            )
    except ValidationFailed as exc:
        errors.extend(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    return {
        "name": name,
        "homepage_url": homepage_url,
        "description": description,
        "callback_urls": "\n".join(urls),
    }


def require_manager(session: Session, actor: Actor, owner: User) -> None:
    """A user manages their own apps; an organization's owners manage its apps."""
    if actor.user is None:
        raise NotFound()
    if owner.is_organization:
        authorize(session, actor, owner, "admin")
    elif actor.user.id != owner.id:
        raise NotFound()


def list_apps(session: Session, owner: User) -> list[OAuthApp]:
    return list(
        session.scalars(select(OAuthApp).where(OAuthApp.owner_id == owner.id).order_by(OAuthApp.id))
    )


def get_app(session: Session, owner: User, app_id: int) -> OAuthApp:
    app = session.scalar(
        select(OAuthApp).where(OAuthApp.id == app_id, OAuthApp.owner_id == owner.id)
    )
    if app is None:
        raise NotFound()
    return app


def get_app_by_client_id(session: Session, client_id: str) -> OAuthApp | None:
    if not isinstance(client_id, str) or not _CLIENT_ID_RE.match(client_id):
        return None
    return session.scalar(select(OAuthApp).where(OAuthApp.client_id == client_id))


def create_app(
    session: Session,
    request: Request | None,
    creator: User,
    owner: User,
    *,
    name: str,
    homepage_url: str,
    callback_urls: list[str] | str,
    description: str = "",
    public_client: bool = False,
) -> OAuthApp:
    fields = _validate_fields(name, homepage_url, description, callback_urls)
    app = OAuthApp(
        owner_id=owner.id,
        client_id=secrets.token_hex(10),
        public_client=bool(public_client),
        created_by_id=creator.id,
        **fields,
    )
    session.add(app)
    session.flush()
    audit.record(
        session,
        owner,
        "oauth_app.create",
        request,
        actor=creator,
        app_id=app.id,
        client_id=app.client_id,
        name=app.name,
    )
    return app


def update_app(
    session: Session,
    app: OAuthApp,
    *,
    name: str,
    homepage_url: str,
    callback_urls: list[str] | str,
    description: str = "",
    public_client: bool = False,
) -> OAuthApp:
    fields = _validate_fields(name, homepage_url, description, callback_urls)
    for key, value in fields.items():
        setattr(app, key, value)
    app.public_client = bool(public_client)
    session.flush()
    return app


def delete_app(session: Session, request: Request | None, actor: User, app: OAuthApp) -> None:
    """Deleting an app revokes everything issued to it: its rows go with it."""
    for model in (OAuthToken, OAuthCode, OAuthGrant, OAuthAppSecret):
        session.execute(delete(model).where(model.app_id == app.id))
    audit.record(
        session,
        app.owner,
        "oauth_app.delete",
        request,
        actor=actor,
        app_id=app.id,
        client_id=app.client_id,
    )
    session.delete(app)
    session.flush()


def list_secrets(session: Session, app: OAuthApp) -> list[OAuthAppSecret]:
    return list(
        session.scalars(
            select(OAuthAppSecret)
            .where(OAuthAppSecret.app_id == app.id)
            .order_by(OAuthAppSecret.id.desc())
        )
    )


def create_secret(
    session: Session, request: Request | None, actor: User, app: OAuthApp
) -> tuple[OAuthAppSecret, str]:
    """The record and the secret itself, which is shown once and never stored."""
    if len(list_secrets(session, app)) >= MAX_SECRETS:
        raise ValidationFailed.invalid(
            "OAuthApp", "client_secret", f"an app may have at most {MAX_SECRETS} client secrets"
        )
    plaintext = secrets.token_hex(20)
    record = OAuthAppSecret(
        app_id=app.id,
        secret_hash=sha256_hex(plaintext),
        last_eight=plaintext[-8:],
        created_by_id=actor.id,
    )
    session.add(record)
    session.flush()
    audit.record(
        session,
        app.owner,
        "oauth_app.secret_created",
        request,
        actor=actor,
        app_id=app.id,
        client_id=app.client_id,
        secret_id=record.id,
    )
    return record, plaintext


def delete_secret(session: Session, app: OAuthApp, secret_id: int) -> None:
    record = session.scalar(
        select(OAuthAppSecret).where(
            OAuthAppSecret.id == secret_id, OAuthAppSecret.app_id == app.id
        )
    )
    if record is None:
        raise NotFound()
    session.delete(record)
    session.flush()


def check_client_secret(session: Session, app: OAuthApp, secret: str) -> bool:
    if not isinstance(secret, str) or not secret or len(secret) > 256:
        return False
    digest = sha256_hex(secret)
    matched = None
    for record in list_secrets(session, app):
        if constant_time_equals(record.secret_hash, digest):
            matched = record
    if matched is None:
        return False
    matched.last_used_at = utcnow()
    return True


def authenticate_client(session: Session, client_id: str, client_secret: str) -> OAuthApp:
    """The app whose id and secret these are; `invalid_client` otherwise (401)."""
    app = get_app_by_client_id(session, client_id)
    if app is None or not check_client_secret(session, app, client_secret):
        raise OAuthError("invalid_client", "The client_id and/or client_secret are incorrect.", 401)
    return app


# Scopes ----------------------------------------------------------------------------------------


def parse_scopes(raw: str | None) -> list[str]:
    """GitHub's `scope` parameter: separated by spaces or commas; unknown scopes are refused."""
    scopes = sorted({scope for scope in re.split(r"[\s,]+", raw or "") if scope})
    unknown = [scope for scope in scopes if scope not in KNOWN_SCOPES]
    if unknown:
        shown = ", ".join(scope[:40] for scope in unknown[:5])
        raise OAuthError("invalid_scope", f"Unknown scope(s): {shown}.")
    return scopes


def check_grantable(user: User, scopes: list[str]) -> None:
    """A person can hand an app only the rights they hold themself."""
    denied = [scope for scope in scopes if scope in _ADMIN_ONLY_SCOPES and not user.is_site_admin]
    if denied:
        raise OAuthError("invalid_scope", f"You cannot grant the scope(s): {', '.join(denied)}.")


def describe_scopes(scopes: list[str]) -> list[tuple[str, str]]:
    return [(scope, SCOPE_DESCRIPTIONS.get(scope, scope)) for scope in scopes]


# Authorization ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    app: OAuthApp
    redirect_uri: str
    scopes: list[str]
    state: str
    code_challenge: str


def resolve_redirect_uri(app: OAuthApp, redirect_uri: str) -> str:
    """The registered URI the request names (exactly), or the first one when it names none."""
    registered = app.callback_url_list
    if not redirect_uri:
        return registered[0]
    if redirect_uri not in registered:
        raise AuthorizeRefused(
            "The redirect_uri is not registered for this application; nothing was sent to it."
        )
    return redirect_uri


def check_client_and_redirect(
    session: Session, client_id: str, redirect_uri: str
) -> tuple[OAuthApp, str]:
    """First the checks whose failure must not redirect anywhere."""
    app = get_app_by_client_id(session, client_id)
    if app is None:
        raise AuthorizeRefused("There is no application with this client_id.")
    return app, resolve_redirect_uri(app, redirect_uri)


def validate_authorization(
    app: OAuthApp,
    redirect_uri: str,
    *,
    user: User,
    response_type: str = "",
    scope: str = "",
    state: str = "",
    code_challenge: str = "",
    code_challenge_method: str = "",
) -> AuthorizationRequest:
    """The remaining checks; their failures go back to the (verified) redirect URI."""
    if response_type and response_type != "code":
        raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")
    if len(state) > 1024:
        raise OAuthError("invalid_request", "The state is too long.")
    if code_challenge or code_challenge_method:
        if code_challenge_method != "S256":
            raise OAuthError(
                "invalid_request", "Only code_challenge_method=S256 is supported (not plain)."
            )
        if not _PKCE_RE.match(code_challenge):
            raise OAuthError("invalid_request", "The code_challenge is malformed.")
    elif app.public_client:
        raise OAuthError("invalid_request", "This public client must use PKCE (S256).")
    scopes = parse_scopes(scope)
    check_grantable(user, scopes)
    return AuthorizationRequest(app, redirect_uri, scopes, state, code_challenge)


def get_grant(session: Session, app: OAuthApp, user: User) -> OAuthGrant | None:
    return session.scalar(
        select(OAuthGrant).where(OAuthGrant.app_id == app.id, OAuthGrant.user_id == user.id)
    )


def needs_consent(session: Session, user: User, areq: AuthorizationRequest) -> bool:
    """GitHub asks again only when the app wants a scope the person has not granted it yet."""
    grant = get_grant(session, areq.app, user)
    if grant is None:
        return True
    return not set(areq.scopes) <= expand_scopes(grant.scope_list)


def approve(
    session: Session, request: Request | None, user: User, areq: AuthorizationRequest
) -> str:
    """Record (or widen) the grant and issue a code; returns the code itself."""
    grant = get_grant(session, areq.app, user)
    if grant is None:
        grant = OAuthGrant(app_id=areq.app.id, user_id=user.id, scopes=",".join(areq.scopes))
        session.add(grant)
        widened = True
    else:
        union = sorted(set(grant.scope_list) | set(areq.scopes))
        widened = union != sorted(grant.scope_list)
        grant.scopes = ",".join(union)
        grant.updated_at = utcnow()
    # No scope asked for on an existing grant: the token carries what was granted before.
    scopes = areq.scopes or grant.scope_list
    code = random_token(24)
    session.add(
        OAuthCode(
            code_hash=sha256_hex(code),
            app_id=areq.app.id,
            user_id=user.id,
            redirect_uri=areq.redirect_uri,
            scopes=",".join(scopes),
            code_challenge=areq.code_challenge,
            expires_at=utcnow() + CODE_TTL,
        )
    )
    session.flush()
    audit.record(
        session,
        user,
        "oauth.authorize",
        request,
        app_id=areq.app.id,
        client_id=areq.app.client_id,
        scopes=scopes,
        consent=widened,
    )
    return code


# Tokens ----------------------------------------------------------------------------------------


def _issue(
    session: Session,
    app: OAuthApp,
    user_id: int,
    scopes: list[str],
    *,
    family: str,
    code_id: int | None,
) -> dict[str, Any]:
    access, refresh = _new_secret(ACCESS_PREFIX), _new_secret(REFRESH_PREFIX)
    now = utcnow()
    session.add(
        OAuthToken(
            app_id=app.id,
            user_id=user_id,
            code_id=code_id,
            family=family,
            token_hash=sha256_hex(access),
            token_last_eight=access[-8:],
            refresh_hash=sha256_hex(refresh),
            scopes=",".join(scopes),
            expires_at=now + ACCESS_TTL,
            refresh_expires_at=now + REFRESH_TTL,
        )
    )
    session.flush()
    return {
        "access_token": access,
        "expires_in": int(ACCESS_TTL.total_seconds()),
        "refresh_token": refresh,
        "refresh_token_expires_in": int(REFRESH_TTL.total_seconds()),
        "scope": ",".join(scopes),
        "token_type": "bearer",
    }


def _revoke_where(session: Session, *conditions: Any) -> None:
    session.execute(
        update(OAuthToken)
        .where(*conditions, OAuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def _verify_pkce(challenge: str, verifier: str) -> bool:
    if not _PKCE_RE.match(verifier or ""):
        return False
    return constant_time_equals(pkce_s256_challenge(verifier), challenge)


def _client_for_grant(
    session: Session, client_id: str, client_secret: str, *, pkce_allowed: bool
) -> OAuthApp:
    """The calling client: a secret when it sends one (it must be right), otherwise a public
    client, or one that proves itself with PKCE when `pkce_allowed`."""
    app = get_app_by_client_id(session, client_id)
    if app is None:
        raise OAuthError("invalid_client", "The client_id and/or client_secret are incorrect.", 401)
    if client_secret:
        if not check_client_secret(session, app, client_secret):
            raise OAuthError(
                "invalid_client", "The client_id and/or client_secret are incorrect.", 401
            )
    elif not (app.public_client or pkce_allowed):
        raise OAuthError("invalid_client", "The client_secret is required.", 401)
    return app


def exchange_code(
    session: Session,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str = "",
    code_verifier: str = "",
) -> dict[str, Any]:
    record = None
    if isinstance(code, str) and 0 < len(code) <= 256:
        record = session.scalar(select(OAuthCode).where(OAuthCode.code_hash == sha256_hex(code)))
    app = _client_for_grant(
        session,
        client_id,
        client_secret,
        pkce_allowed=bool(record is not None and record.code_challenge),
    )
    bad = OAuthError(
        "invalid_grant", "The code passed is incorrect or expired."
    )  # GitHub's bad_verification_code
    if record is None or record.app_id != app.id:
        raise bad
    if record.used_at is not None:
        # RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
        _revoke_where(session, OAuthToken.code_id == record.id)
        raise bad
    record.used_at = utcnow()
    if record.expires_at <= utcnow():
        raise bad
    if redirect_uri and redirect_uri != record.redirect_uri:
        raise OAuthError("invalid_grant", "The redirect_uri does not match the authorization.")
    if record.code_challenge:
        if not _verify_pkce(record.code_challenge, code_verifier):
            raise OAuthError("invalid_grant", "The code_verifier is missing or does not match.")
    elif code_verifier:
        raise OAuthError("invalid_grant", "The authorization request had no code_challenge.")
    user = session.get(User, record.user_id)
    grant = get_grant(session, app, user) if user is not None else None
    if user is None or not user.is_active or grant is None:
        raise bad
    return _issue(
        session, app, user.id, record.scope_list, family=random_token(16), code_id=record.id
    )


def refresh(
    session: Session,
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    scope: str = "",
) -> dict[str, Any]:
    app = _client_for_grant(session, client_id, client_secret, pkce_allowed=False)
    bad = OAuthError("invalid_grant", "The refresh token passed is incorrect or expired.")
    if not _shaped(refresh_token, REFRESH_PREFIX):
        raise bad
    token = session.scalar(
        select(OAuthToken).where(OAuthToken.refresh_hash == sha256_hex(refresh_token))
    )
    if token is None or token.app_id != app.id:
        raise bad
    if token.revoked_at is not None:
        # A rotated refresh token came back: someone holds a copy. End the whole line.
        _revoke_where(session, OAuthToken.family == token.family)
        raise bad
    if token.refresh_expires_at <= utcnow() or not token.user.is_active:
        raise bad
    if get_grant(session, app, token.user) is None:
        raise bad
    scopes = token.scope_list
    if scope:
        requested = parse_scopes(scope)
        if not set(requested) <= expand_scopes(scopes):
            raise OAuthError("invalid_scope", "A refresh cannot widen the token's scopes.")
        scopes = requested
    token.revoked_at = utcnow()
    return _issue(session, app, token.user_id, scopes, family=token.family, code_id=token.code_id)


def _find_token(session: Session, app: OAuthApp, value: str) -> OAuthToken | None:
    if _shaped(value, ACCESS_PREFIX):
        column = OAuthToken.token_hash
    elif _shaped(value, REFRESH_PREFIX):
        column = OAuthToken.refresh_hash
    else:
        return None
    token = session.scalar(select(OAuthToken).where(column == sha256_hex(value)))
    if token is None or token.app_id != app.id:
        return None
    return token


def revoke_token(session: Session, request: Request | None, app: OAuthApp, value: str) -> bool:
    """Revoke an access or refresh token of `app` and everything refreshed from the same
    code. False when the token is unknown (RFC 7009 answers 200 all the same)."""
    token = _find_token(session, app, value)
    if token is None:
        return False
    _revoke_where(session, OAuthToken.family == token.family)
    audit.record(
        session, token.user, "oauth.revoke", request, app_id=app.id, client_id=app.client_id
    )
    return True


def _drop_grant(session: Session, app_id: int, user_id: int) -> None:
    _revoke_where(session, OAuthToken.app_id == app_id, OAuthToken.user_id == user_id)
    session.execute(
        delete(OAuthGrant).where(OAuthGrant.app_id == app_id, OAuthGrant.user_id == user_id)
    )
    session.flush()


def delete_grant_for_token(
    session: Session, request: Request | None, app: OAuthApp, value: str
) -> bool:
    """GitHub's `DELETE /applications/{client_id}/grant`: the app gives up the person's grant
    entirely, every token of theirs included."""
    token = _find_token(session, app, value)
    if token is None:
        return False
    _drop_grant(session, app.id, token.user_id)
    audit.record(
        session,
        token.user,
        "oauth.revoke",
        request,
        app_id=app.id,
        client_id=app.client_id,
        grant=True,
    )
    return True


def list_authorizations(session: Session, user: User) -> list[OAuthGrant]:
    return list(
        session.scalars(
            select(OAuthGrant).where(OAuthGrant.user_id == user.id).order_by(OAuthGrant.id)
        )
    )


def revoke_authorization(
    session: Session, request: Request | None, user: User, app_id: int
) -> OAuthApp:
    grant = session.scalar(
        select(OAuthGrant).where(OAuthGrant.app_id == app_id, OAuthGrant.user_id == user.id)
    )
    if grant is None:
        raise NotFound()
    app = grant.app
    _drop_grant(session, app.id, user.id)
    audit.record(
        session, user, "oauth.revoke", request, app_id=app.id, client_id=app.client_id, grant=True
    )
    return app


# Bearer tokens ---------------------------------------------------------------------------------


def authenticate_access_token(session: Session, secret: str) -> OAuthToken | None:
    if not _shaped(secret, ACCESS_PREFIX):
        return None
    token = session.scalar(select(OAuthToken).where(OAuthToken.token_hash == sha256_hex(secret)))
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        return None
    if not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
    return token


def actor_for_oauth_token(session: Session, secret: str) -> Actor | None:
    """The user an OAuth access token acts for, narrowed to its scopes."""
    token = authenticate_access_token(session, secret)
    if token is None:
        return None
    return Actor(user=token.user, method="oauth", scopes=expand_scopes(token.scope_list))


def scopes_header(actor: Actor) -> str:
    """`X-OAuth-Scopes` for an OAuth token's actor: its scopes without the ones they imply, which
    gives back what was granted (GitHub lists `user`, not `user` and `read:user`)."""
    if actor.method != "oauth" or actor.scopes is None:
        return ""
    implied = frozenset().union(*(SCOPE_IMPLIES.get(scope, frozenset()) for scope in actor.scopes))
    return ", ".join(sorted(actor.scopes - implied))
