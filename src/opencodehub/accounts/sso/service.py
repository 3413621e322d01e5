"""Sign-in with external providers: the sources a site admin configures, the identities people
link, and the flow that turns a provider's answer into a signed-in OpenCodeHub user.

Rules this module enforces:

- A `state` is random, bound to the browser by a cookie, stored hashed, and deleted when the
  callback uses it: missing, forged, foreign or replayed states are refused.
- An identity is matched by the provider's stable subject, never by an email address. An email
  that belongs to an existing account only leads to an offer to link it, after that account's
  password was given.
- A provider's email is stored as verified only when the provider says it verified it.
- The source's restrictions (enabled, allowed domains, required group) are checked on every
  sign-in, not only the first.
- A re-authentication for sudo mode counts only when the provider proves a fresh sign-in
  (OpenID Connect: `prompt=login`, `max_age=0` and a checked `auth_time`). GitHub and plain
  GitLab cannot, so they serve only accounts that have no other proof to give
  (`may_reauthenticate_with`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import Email, User
from opencodehub.accounts.names import EMAIL_RE, RESERVED_USERNAMES, USERNAME_RE
from opencodehub.accounts.security import audit
from opencodehub.accounts.sso import providers
from opencodehub.accounts.sso.models import (
    AuthSource,
    AuthSourceKind,
    ExternalIdentity,
    SSOAuthRequest,
    SSOPendingSignIn,
)
from opencodehub.config import Settings
from opencodehub.core.crypto import constant_time_equals, decrypt, encrypt, random_token, sha256_hex
from opencodehub.core.errors import FieldError, NotFound, ValidationFailed
from opencodehub.core.time import utcnow

STATE_COOKIE = "och_sso_state"
PENDING_COOKIE = "och_sso_pending"
COOKIE_PATH = "/login/sso"
STATE_TTL = timedelta(minutes=10)
PENDING_TTL = timedelta(minutes=15)

SLUG_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,62}\Z")
_DOMAIN_RE = re.compile(
    r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+\Z"
)
_GROUP_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}\Z")
_TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{20,128}\Z")
_NON_NAME_RE = re.compile(r"[^A-Za-z0-9]+")


class SSOFailed(Exception):
    """A sign-in that must stop. `message` is shown to the person; nothing was linked or created."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        self.message = message
        self.status_code = status_code
        super().__init__(message)


# Site administration --------------------------------------------------------------------------


def require_site_admin(user: User | None) -> User:
    """Sign-in sources are for site admins only; anyone else finds nothing there."""
    if user is None or not user.is_site_admin or not user.is_active:
        raise NotFound()
    return user


def _invalid(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed.invalid("AuthSource", field_name, message)


def _clean_url(value: str, field_name: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    if len(value) > 1024 or not re.match(r"\Ahttps?://[^\s/?#]+[^\s]*\Z", value):
        raise _invalid(field_name, "must be an http:// or https:// URL")
    return value.rstrip("/") if field_name != "discovery_url" else value


def _clean_domains(value: str | list[str]) -> str:
    items = value if isinstance(value, list) else re.split(r"[\s,]+", value or "")
    domains: list[str] = []
    for item in items:
        domain = str(item).strip().lower().lstrip("@")
        if not domain:
            continue
        if not _DOMAIN_RE.match(domain):
            raise _invalid("allowed_domains", f"'{domain[:100]}' is not a domain name")
        if domain not in domains:
            domains.append(domain)
    joined = ",".join(domains)
    if len(joined) > 1024:
        raise _invalid("allowed_domains", "lists too many domains")
    return joined


def _clean_mapping(session: Session, value: dict[str, str] | None) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, dict) or len(value) > 100:
        raise _invalid("org_mapping", "must map at most 100 provider groups to organizations")
    mapping: dict[str, str] = {}
    for group, org_login in value.items():
        group = str(group).strip()
        if not _GROUP_RE.match(group):
            raise _invalid("org_mapping", f"'{group[:100]}' is not a provider group name")
        if accounts.get_organization(session, str(org_login).strip()) is None:
            raise _invalid("org_mapping", f"there is no organization '{str(org_login)[:100]}'")
        mapping[group] = str(org_login).strip()
    return mapping


def parse_mapping(text: str) -> dict[str, str]:
    """`group=org` pairs, one a line or comma-separated (the form and the CLI use this)."""
    mapping: dict[str, str] = {}
    for item in re.split(r"[\n,]+", text or ""):
        item = item.strip()
        if not item:
            continue
        group, sep, org_login = item.partition("=")
        if not sep or not group.strip() or not org_login.strip():
            raise _invalid("org_mapping", f"'{item[:100]}' is not of the form group=organization")
        mapping[group.strip()] = org_login.strip()
    return mapping


def slug_for(name: str) -> str:
    return _NON_NAME_RE.sub("-", name.lower()).strip("-")[:63].strip("-")


_UNSET: Any = object()


def _apply(
    session: Session,
    secret: bytes,
    source: AuthSource,
    *,
    name: str = _UNSET,
    slug: str = _UNSET,
    kind: str = _UNSET,
    client_id: str = _UNSET,
    client_secret: str = _UNSET,
    scopes: str = _UNSET,
    discovery_url: str = _UNSET,
    base_url: str = _UNSET,
    api_url: str = _UNSET,
    enabled: bool = _UNSET,
    allowed_domains: str | list[str] = _UNSET,
    required_group: str = _UNSET,
    org_mapping: dict[str, str] | None = _UNSET,
) -> AuthSource:
    if name is not _UNSET:
        name = (name or "").strip()
        if not name or len(name) > 100 or any(ord(char) < 0x20 for char in name):
            raise _invalid("name", "must be 1 to 100 characters without control characters")
        source.name = name
    if slug is not _UNSET:
        slug = (slug or "").strip().lower()
        if not SLUG_RE.match(slug):
            raise _invalid("slug", "may only contain lower-case letters, digits and single hyphens")
        taken = session.scalar(select(AuthSource.id).where(AuthSource.slug == slug))
        if taken is not None and taken != source.id:
            raise ValidationFailed.exists("AuthSource", "slug", "is already used by another source")
        source.slug = slug
    if kind is not _UNSET:
        try:
            source.kind = AuthSourceKind(kind)
        except ValueError:
            raise _invalid("kind", "must be github, gitlab or oidc") from None
    if client_id is not _UNSET:
        client_id = (client_id or "").strip()
        if not client_id or len(client_id) > 255 or any(ord(c) < 0x21 for c in client_id):
            raise _invalid("client_id", "must be 1 to 255 printable characters")
        source.client_id = client_id
    if client_secret is not _UNSET:
        if not client_secret or len(client_secret) > 1024:
            raise _invalid("client_secret", "must be 1 to 1024 characters")
        source.client_secret_encrypted = encrypt(secret, client_secret)
    if scopes is not _UNSET:
        scopes = " ".join((scopes or "").replace(",", " ").split())
        if len(scopes) > 1024 or any(ord(c) < 0x20 for c in scopes):
            raise _invalid("scopes", "must be a space-separated list")
        source.scopes = scopes
    if discovery_url is not _UNSET:
        source.discovery_url = _clean_url(discovery_url, "discovery_url")
    if base_url is not _UNSET:
        source.base_url = _clean_url(base_url, "base_url")
    if api_url is not _UNSET:
        source.api_url = _clean_url(api_url, "api_url")
    if enabled is not _UNSET:
        source.enabled = bool(enabled)
    if allowed_domains is not _UNSET:
        source.allowed_domains = _clean_domains(allowed_domains)
    if required_group is not _UNSET:
        required_group = (required_group or "").strip()
        if required_group and not _GROUP_RE.match(required_group):
            raise _invalid("required_group", "is not a provider organization or group name")
        source.required_group = required_group
    if org_mapping is not _UNSET:
        source.org_mapping = _clean_mapping(session, org_mapping)
    if source.kind == AuthSourceKind.OIDC and not source.discovery_url:
        raise ValidationFailed.missing("AuthSource", "discovery_url")
    return source


def create_source(
    session: Session,
    secret: bytes,
    *,
    name: str,
    kind: str,
    client_id: str,
    client_secret: str,
    slug: str = "",
    **fields: Any,
) -> AuthSource:
    source = AuthSource(
        enabled=True,
        scopes="",
        discovery_url="",
        base_url="",
        api_url="",
        allowed_domains="",
        required_group="",
        org_mapping={},
    )
    _apply(
        session,
        secret,
        source,
        name=name,
        slug=slug or slug_for(name or ""),
        kind=kind,
        client_id=client_id,
        client_secret=client_secret,
        **fields,
    )
    session.add(source)
    session.flush()
    return source


def update_source(session: Session, secret: bytes, source: AuthSource, **fields: Any) -> AuthSource:
    # An empty secret or slug field in a form keeps the stored value.
    for name in ("client_secret", "slug"):
        if fields.get(name) == "":
            fields.pop(name)
    _apply(session, secret, source, **fields)
    session.flush()
    providers.clear_caches()
    return source


def delete_source(session: Session, source: AuthSource) -> None:
    """Remove a source; the identities linked through it go with it."""
    for model in (ExternalIdentity, SSOAuthRequest, SSOPendingSignIn):
        session.execute(delete(model).where(model.source_id == source.id))
    session.delete(source)
    session.flush()


def list_sources(session: Session, *, enabled_only: bool = False) -> list[AuthSource]:
    statement = select(AuthSource).order_by(AuthSource.name, AuthSource.id)
    if enabled_only:
        statement = statement.where(AuthSource.enabled.is_(True))
    return list(session.scalars(statement))


def get_source(session: Session, key: str | int) -> AuthSource:
    """A source by id or slug; NotFound otherwise."""
    source: AuthSource | None = None
    if isinstance(key, int):
        source = session.get(AuthSource, key)
    elif isinstance(key, str) and SLUG_RE.match(key):
        source = session.scalar(select(AuthSource).where(AuthSource.slug == key))
    if source is None:
        raise NotFound()
    return source


def client_secret_of(source: AuthSource, secret: bytes) -> str:
    return decrypt(secret, source.client_secret_encrypted)


def source_json(source: AuthSource) -> dict[str, Any]:
    """The REST shape. The client secret is never returned, only whether one is set."""
    from opencodehub.core.time import isoformat

    return {
        "id": source.id,
        "name": source.name,
        "slug": source.slug,
        "kind": source.kind.value,
        "enabled": source.enabled,
        "client_id": source.client_id,
        "client_secret_set": bool(source.client_secret_encrypted),
        "scopes": source.scopes,
        "discovery_url": source.discovery_url,
        "base_url": source.base_url,
        "api_url": source.api_url,
        "allowed_domains": source.domain_list,
        "required_group": source.required_group,
        "org_mapping": dict(source.org_mapping or {}),
        "created_at": isoformat(source.created_at),
        "updated_at": isoformat(source.updated_at),
    }


# The authorization-code flow -------------------------------------------------------------------


def redirect_uri(settings: Settings, source: AuthSource) -> str:
    # From the configured base URL, never the request's Host header.
    return f"{settings.effective_base_url}/login/sso/{source.slug}/callback"


def _purge_expired(session: Session) -> None:
    now = utcnow()
    session.execute(delete(SSOAuthRequest).where(SSOAuthRequest.expires_at < now))
    session.execute(delete(SSOPendingSignIn).where(SSOPendingSignIn.expires_at < now))


def _has_other_proof(session: Session, user: User) -> bool:
    from opencodehub.accounts.security import service as security

    return bool(user.password_hash) or security.has_two_factor(session, user)


def may_reauthenticate_with(session: Session, source: AuthSource, user: User) -> bool:
    """Whether signing in again with `source` may put `user` in sudo mode.

    OpenID Connect sources (and GitLab with `openid`) can be made to show their login form
    and say when the person signed in, so they always may. GitHub and plain GitLab sign a
    person in silently whenever the browser is signed in there, so "re-authenticating" with
    them proves only that the browser holds a provider session. They are accepted only for an
    account with no password and no second factor: its provider is its only credential, so
    there is nothing fresher to ask for, and refusing would leave it unable ever to set a
    password or a second factor. The cost, accepted knowingly: a browser signed in to both
    OpenCodeHub and that provider can enter sudo mode of such an account, as it could sign in
    to the account afresh anyway.
    """
    if not source.enabled:
        return False
    return providers.proves_fresh_sign_in(source) or not _has_other_proof(session, user)


def sudo_sources(session: Session, user: User) -> list[AuthSource]:
    """The providers linked to `user` that the sudo page offers (`may_reauthenticate_with`)."""
    return [
        identity.source
        for identity in list_identities(session, user)
        if may_reauthenticate_with(session, identity.source, user)
    ]


def begin(
    session: Session,
    settings: Settings,
    source: AuthSource,
    *,
    next_path: str = "/",
    user: User | None = None,
    sudo: bool = False,
) -> tuple[str, str]:
    """Start a sign-in (or, with `user`, the linking of another provider to that user; with
    `sudo` too, that user's re-authentication with a provider already linked).

    Returns the provider URL to redirect to and the state value for the browser's cookie.
    """
    if not source.enabled:
        raise SSOFailed(f"Sign-in with {source.name} is disabled.", 403)
    if sudo and user is None:
        raise SSOFailed("Sign in first.", 403)
    if sudo and user is not None and not may_reauthenticate_with(session, source, user):
        raise SSOFailed(
            f"{source.name} cannot confirm that you signed in again just now. Confirm access "
            "with your password, an authentication code or a security key instead.",
            403,
        )
    purpose = "sudo" if sudo else "link" if user is not None else "sign_in"
    _purge_expired(session)
    state = random_token(32)
    nonce = random_token(24)
    code_verifier = random_token(48)  # 64 characters, within RFC 7636's 43..128
    try:
        url = providers.authorization_url(
            source,
            redirect_uri(settings, source),
            state,
            code_verifier,
            nonce,
            reauthenticate=sudo,
        )
    except providers.ProviderError as exc:
        raise SSOFailed(str(exc), 502) from None
    session.add(
        SSOAuthRequest(
            state_hash=sha256_hex(state),
            source_id=source.id,
            user_id=user.id if user is not None else None,
            purpose=purpose,
            nonce=nonce,
            code_verifier_encrypted=encrypt(settings.secret, code_verifier),
            next_path=next_path[:2048],
            expires_at=utcnow() + STATE_TTL,
        )
    )
    session.flush()
    return url, state


@dataclass
class Outcome:
    """What a callback led to: `sign_in` (user), `linked` (user), `reauthenticated` (user, for
    sudo mode) or `pending` (token)."""

    kind: str
    next_path: str
    user: User | None = None
    source: AuthSource | None = None
    pending_token: str = ""


def _failed(
    session: Session,
    request: Request | None,
    source: AuthSource | None,
    reason: str,
    user: User | None = None,
    status: int = 400,
) -> SSOFailed:
    audit.record(
        session,
        user,
        "sso.sign_in_failed",
        request,
        source=source.slug if source is not None else "",
        reason=reason,
    )
    return SSOFailed(reason, status)


def _check_restrictions(source: AuthSource, profile: providers.Profile) -> str:
    """Why this provider account may not sign in through `source` ("" when it may)."""
    domains = source.domain_list
    if domains:
        domain = profile.email.rpartition("@")[2].lower() if profile.email_verified else ""
        if domain not in domains:
            return (
                f"{source.name} sign-in is limited to verified email addresses at "
                + ", ".join(domains)
                + "."
            )
    if source.required_group:
        wanted = source.required_group.lower()
        if wanted not in {group.lower() for group in profile.groups}:
            kind = "organization" if source.kind == AuthSourceKind.GITHUB else "group"
            return (
                f"Only members of the {source.required_group} {kind} "
                f"may sign in with {source.name}."
            )
    return ""


def _join_mapped_orgs(session: Session, source: AuthSource, user: User, groups: list[str]) -> None:
    mapping = {group.lower(): org for group, org in (source.org_mapping or {}).items()}
    for group in groups:
        org_login = mapping.get(group.lower())
        if org_login is None:
            continue
        org = accounts.get_organization(session, org_login)
        if org is not None and accounts.get_org_membership(session, org, user) is None:
            accounts.add_org_member(session, org, user)


def _find_identity(session: Session, source: AuthSource, subject: str) -> ExternalIdentity | None:
    return session.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.source_id == source.id, ExternalIdentity.subject == subject
        )
    )


def _refresh_identity(identity: ExternalIdentity, profile: providers.Profile) -> None:
    identity.login = profile.login[:255]
    identity.email = profile.email[:255]
    identity.email_verified = profile.email_verified
    identity.last_used_at = utcnow()


def complete(
    session: Session,
    settings: Settings,
    request: Request | None,
    slug: str,
    *,
    state: str,
    cookie_state: str,
    code: str,
    error: str = "",
    issuer: str = "",
    current_user: User | None = None,
) -> Outcome:
    """Handle the provider's redirect back. Raises `SSOFailed`; the caller commits either way,
    so the used state stays used and the failure stays logged."""
    try:
        source: AuthSource | None = get_source(session, slug)
    except NotFound:
        source = None
    if not state or not _TOKEN_RE.match(state):
        raise _failed(
            session, request, source, "The sign-in request has no valid state. Start again."
        )
    row = session.scalar(
        select(SSOAuthRequest).where(SSOAuthRequest.state_hash == sha256_hex(state))
    )
    if row is None:
        raise _failed(
            session,
            request,
            source,
            "This sign-in link was already used or has expired. Start again.",
        )
    # Single use, whatever happens next.
    session.delete(row)
    session.flush()
    if not cookie_state or not constant_time_equals(cookie_state, state):
        raise _failed(
            session, request, source, "This sign-in was started in another browser. Start again."
        )
    if row.expires_at < utcnow():
        raise _failed(session, request, source, "This sign-in took too long. Start again.")
    if source is None or row.source_id != source.id:
        raise _failed(session, request, source, "This sign-in was started for another provider.")
    if not source.enabled:
        raise _failed(
            session, request, source, f"Sign-in with {source.name} is disabled.", status=403
        )
    if error:
        raise _failed(
            session, request, source, f"{source.name} did not sign you in ({error[:100]})."
        )
    if not code or len(code) > 2048:
        raise _failed(session, request, source, f"{source.name} sent no authorization code.")
    if issuer and source.kind == AuthSourceKind.OIDC:
        # RFC 9207: a provider that names itself in the redirect must be the one we asked.
        try:
            expected_issuer = providers.oidc_endpoints(source).issuer
        except providers.ProviderError as exc:
            raise _failed(session, request, source, str(exc)) from None
        if issuer != expected_issuer:
            raise _failed(session, request, source, "The answer came from another provider.")
    linking_user: User | None = None
    if row.user_id is not None:
        if current_user is None or current_user.id != row.user_id:
            raise _failed(session, request, source, "Sign in to the account you are linking first.")
        linking_user = current_user
    try:
        profile = providers.fetch_profile(
            source,
            client_secret_of(source, settings.secret),
            code,
            redirect_uri(settings, source),
            decrypt(settings.secret, row.code_verifier_encrypted),
            row.nonce,
        )
    except providers.ProviderError as exc:
        raise _failed(session, request, source, str(exc), user=linking_user) from None
    restriction = _check_restrictions(source, profile)
    if restriction:
        raise _failed(session, request, source, restriction, user=linking_user, status=403)
    identity = _find_identity(session, source, profile.subject)

    if linking_user is not None and row.purpose == "sudo":
        # Only the provider account linked to this user proves who they are.
        if identity is None or identity.user_id != linking_user.id:
            raise _failed(
                session,
                request,
                source,
                f"This {source.name} account is not the one linked to your OpenCodeHub account.",
                user=linking_user,
                status=403,
            )
        # Checked again at the callback: the account may have gained a password or a second
        # factor since the request began.
        if not may_reauthenticate_with(session, source, linking_user):
            raise _failed(
                session,
                request,
                source,
                f"{source.name} cannot confirm that you signed in again just now.",
                user=linking_user,
                status=403,
            )
        if providers.proves_fresh_sign_in(source):
            try:
                providers.check_fresh_sign_in(
                    profile.auth_time, started_at=row.created_at.timestamp()
                )
            except providers.ProviderError as exc:
                raise _failed(
                    session, request, source, str(exc), user=linking_user, status=403
                ) from None
        _refresh_identity(identity, profile)
        return Outcome("reauthenticated", row.next_path, linking_user, source)

    if linking_user is not None:
        if identity is not None:
            if identity.user_id == linking_user.id:
                return Outcome("linked", row.next_path, linking_user, source)
            raise _failed(
                session,
                request,
                source,
                f"This {source.name} account is already linked to another OpenCodeHub account.",
                user=linking_user,
                status=409,
            )
        _link(session, request, source, linking_user, profile)
        return Outcome("linked", row.next_path, linking_user, source)

    if identity is not None:
        user = identity.user
        if not user.is_active:
            raise _failed(session, request, source, "This account is suspended.", user, status=403)
        _refresh_identity(identity, profile)
        user.last_login_at = utcnow()
        _join_mapped_orgs(session, source, user, profile.groups)
        audit.record(session, user, "sso.sign_in", request, source=source.slug)
        return Outcome("sign_in", row.next_path, user, source)

    token = random_token(32)
    session.add(
        SSOPendingSignIn(
            token_hash=sha256_hex(token),
            source_id=source.id,
            subject=profile.subject[:255],
            login=profile.login[:255],
            email=profile.email[:255],
            email_verified=profile.email_verified,
            full_name=profile.name[:255],
            groups=profile.groups[:200],
            next_path=row.next_path,
            expires_at=utcnow() + PENDING_TTL,
        )
    )
    session.flush()
    return Outcome("pending", row.next_path, source=source, pending_token=token)


def _link(
    session: Session,
    request: Request | None,
    source: AuthSource,
    user: User,
    profile: providers.Profile | SSOPendingSignIn,
) -> ExternalIdentity:
    existing = session.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.source_id == source.id, ExternalIdentity.user_id == user.id
        )
    )
    if existing is not None:
        raise SSOFailed(
            f"Your account is already linked to another {source.name} account. Unlink it first.",
            409,
        )
    identity = ExternalIdentity(
        user_id=user.id,
        source_id=source.id,
        subject=profile.subject[:255],
        login=profile.login[:255],
        email=profile.email[:255],
        email_verified=profile.email_verified,
        linked_at=utcnow(),
        last_used_at=utcnow(),
    )
    session.add(identity)
    session.flush()
    groups = profile.groups if isinstance(profile.groups, list) else []
    _join_mapped_orgs(session, source, user, groups)
    audit.record(session, user, "sso.link", request, source=source.slug, login=profile.login[:100])
    return identity


# Provider accounts linked to nobody yet ---------------------------------------------------------


def get_pending(session: Session, token: str | None) -> SSOPendingSignIn | None:
    if not token or not _TOKEN_RE.match(token):
        return None
    pending = session.scalar(
        select(SSOPendingSignIn).where(SSOPendingSignIn.token_hash == sha256_hex(token))
    )
    if pending is None or pending.expires_at < utcnow():
        return None
    return pending


def propose_username(login: str, email: str = "") -> str:
    """The provider login made into a valid OpenCodeHub name ("" when nothing usable is left)."""
    base = login or email.partition("@")[0]
    name = _NON_NAME_RE.sub("-", base.encode("ascii", "ignore").decode()).strip("-")
    name = name[:39].rstrip("-")
    if not name or not USERNAME_RE.match(name) or name.lower() in RESERVED_USERNAMES:
        return ""
    return name


def _email_owner(session: Session, email: str) -> User | None:
    if not email or not EMAIL_RE.match(email):
        return None
    return session.scalar(
        select(User).join(Email, Email.user_id == User.id).where(Email.lower_email == email.lower())
    )


@dataclass
class PendingChoices:
    """What the "finish signing in" page offers."""

    proposed_username: str
    username_available: bool
    can_sign_up: bool
    sign_up_refusal: str
    email_in_use: bool


def choices_for(session: Session, settings: Settings, pending: SSOPendingSignIn) -> PendingChoices:
    email_in_use = _email_owner(session, pending.email) is not None
    refusal = ""
    if not settings.allow_signup:
        refusal = "Sign-up is disabled on this instance."
    elif not pending.email or not pending.email_verified or not EMAIL_RE.match(pending.email):
        refusal = (
            f"{pending.source.name} did not confirm an email address for this account, "
            "so no new account can be created from it. Verify your email address there, "
            "or link an existing account."
        )
    elif email_in_use:
        refusal = (
            f"An OpenCodeHub account already uses {pending.email}. If it is yours, sign in with "
            "its password below to link it."
        )
    proposed = propose_username(pending.login, pending.email)
    available = bool(proposed) and not accounts.name_is_taken(session, proposed)
    if proposed and not available:
        for suffix in range(1, 10):
            candidate = f"{proposed[: 39 - len(str(suffix)) - 1]}-{suffix}"
            if not accounts.name_is_taken(session, candidate):
                proposed = candidate
                break
    return PendingChoices(
        proposed_username=proposed,
        username_available=available,
        can_sign_up=not refusal,
        sign_up_refusal=refusal,
        email_in_use=email_in_use,
    )


def _consume_pending(session: Session, pending: SSOPendingSignIn) -> None:
    session.delete(pending)
    session.flush()


def sign_up_pending(
    session: Session,
    settings: Settings,
    request: Request | None,
    pending: SSOPendingSignIn,
    username: str,
) -> User:
    """Create an account for a provider account linked to nobody. Raises `ValidationFailed`
    (a bad or taken name, shown on the form) or `SSOFailed` (not allowed at all)."""
    choices = choices_for(session, settings, pending)
    if not choices.can_sign_up:
        raise SSOFailed(choices.sign_up_refusal, 403)
    source = pending.source
    if not source.enabled:
        raise SSOFailed(f"Sign-in with {source.name} is disabled.", 403)
    if _find_identity(session, source, pending.subject) is not None:
        raise SSOFailed(f"This {source.name} account is already linked.", 409)
    user = accounts.create_user(
        session,
        username.strip(),
        pending.email,
        None,
        email_verified=True,
        full_name=pending.full_name,
    )
    user.last_login_at = utcnow()
    audit.record(session, user, "sso.signup", request, source=source.slug)
    _link(session, request, source, user, pending)
    audit.record(session, user, "sso.sign_in", request, source=source.slug)
    _consume_pending(session, pending)
    return user


def link_pending(
    session: Session, request: Request | None, pending: SSOPendingSignIn, user: User
) -> ExternalIdentity:
    """Link the provider account to `user`, whose password the caller has just checked."""
    source = pending.source
    if not source.enabled:
        raise SSOFailed(f"Sign-in with {source.name} is disabled.", 403)
    if _find_identity(session, source, pending.subject) is not None:
        raise SSOFailed(f"This {source.name} account is already linked.", 409)
    identity = _link(session, request, source, user, pending)
    _consume_pending(session, pending)
    return identity


def link_pending_after_second_factor(
    session: Session, request: Request | None, pending_id: int, user: User
) -> tuple[AuthSource, str]:
    """Link the provider account waiting as `pending_id` to `user`, who has now passed both the
    password check and the second factor. Returns the source and where the sign-in goes next."""
    pending = session.get(SSOPendingSignIn, pending_id)
    if pending is None or pending.expires_at < utcnow():
        raise SSOFailed("This sign-in has expired. Start again from the sign-in page.", 400)
    source, next_path = pending.source, pending.next_path
    link_pending(session, request, pending, user)
    return source, next_path


# Settings: linked accounts ----------------------------------------------------------------------


def list_identities(session: Session, user: User) -> list[ExternalIdentity]:
    return list(
        session.scalars(
            select(ExternalIdentity)
            .where(ExternalIdentity.user_id == user.id)
            .order_by(ExternalIdentity.linked_at, ExternalIdentity.id)
        ).unique()
    )


def unlink(session: Session, request: Request | None, user: User, identity_id: int) -> AuthSource:
    identity = session.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.id == identity_id, ExternalIdentity.user_id == user.id
        )
    )
    if identity is None:
        raise NotFound()
    others = (
        session.scalar(
            select(func.count())
            .select_from(ExternalIdentity)
            .where(ExternalIdentity.user_id == user.id, ExternalIdentity.id != identity.id)
        )
        or 0
    )
    if not user.password_hash and others == 0:
        raise ValidationFailed(
            FieldError(
                "ExternalIdentity",
                "identity",
                "custom",
                "this is your only way to sign in; set a password or link another provider first",
            )
        )
    source = identity.source
    session.delete(identity)
    session.flush()
    audit.record(session, user, "sso.unlink", request, source=source.slug, login=identity.login)
    return source
