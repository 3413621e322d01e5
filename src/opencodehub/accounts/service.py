"""Accounts logic: the only code that writes the accounts tables."""

from __future__ import annotations

import contextlib
import importlib
import re
import secrets
import string
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import KNOWN_SCOPES, Actor, expand_scopes
from opencodehub.accounts.keys import InvalidKey, parse_public_key
from opencodehub.accounts.models import (
    AccessToken,
    AccountKind,
    Email,
    OrgMembership,
    OrgRole,
    Permission,
    SSHKey,
    Team,
    TeamMember,
    User,
    WebSession,
)
from opencodehub.accounts.names import (
    EMAIL_RE,
    TEAM_SLUG_RE,
    USERNAME_RE,
    team_slug,
    validate_email,
    validate_team_name,
    validate_text,
    validate_username,
)
from opencodehub.core.crypto import sha256_hex
from opencodehub.core.errors import FieldError, NotFound, ValidationFailed
from opencodehub.core.time import utcnow

if TYPE_CHECKING:
    from opencodehub.repos.models import Repository

TOKEN_PREFIX = "och_"  # noqa: S105 - a public prefix that marks our tokens, not a secret
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_TOKEN_BODY_LENGTH = 40
# Writing last_used_at on every request would turn each API read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

password_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# A hash to verify against when the account does not exist, so timing does not reveal which.
# Made on first need: hashing takes a noticeable part of a second and 64 MiB, which start-up
# should not pay.
_DUMMY_HASH: str | None = None


# Passwords -------------------------------------------------------------------------------------


def validate_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed.invalid(
            "User", "password", f"must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed.invalid(
            "User", "password", f"must be at most {MAX_PASSWORD_LENGTH} characters"
        )
    if "\x00" in password:
        raise ValidationFailed.invalid("User", "password", "must not contain NUL characters")
    return password


def hash_password(password: str) -> str:
    return password_hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    """Verify, and rehash in place when the hashing parameters have changed since."""
    if not user.password_hash:
        _burn_password_time(password)
        return False
    try:
        password_hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if password_hasher.check_needs_rehash(user.password_hash):
        user.password_hash = password_hasher.hash(password)
    return True


def _burn_password_time(password: str) -> None:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = password_hasher.hash(secrets.token_hex(16))
    with contextlib.suppress(VerificationError):
        password_hasher.verify(_DUMMY_HASH, password)


# Users -----------------------------------------------------------------------------------------


def get_account(session: Session, name: str) -> User | None:
    """A user or an organization by name, case-insensitively."""
    # Anything that could not be a name never reaches the database (PostgreSQL refuses NUL).
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        return None
    return session.scalar(select(User).where(User.lower_username == name.lower()))


def get_user(session: Session, name: str) -> User | None:
    account = get_account(session, name)
    if account is None or account.kind != AccountKind.USER:
        return None
    return account


def get_user_by_email(session: Session, email: str) -> User | None:
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        return None
    return session.scalar(
        select(User).join(Email, Email.user_id == User.id).where(Email.lower_email == email.lower())
    )


def name_is_taken(session: Session, name: str) -> bool:
    return get_account(session, name) is not None


def count_users(session: Session) -> int:
    return (
        session.scalar(select(func.count()).select_from(User).where(User.kind == AccountKind.USER))
        or 0
    )


def create_user(
    session: Session,
    username: str,
    email: str,
    password: str | None,
    *,
    is_site_admin: bool = False,
    email_verified: bool = False,
    full_name: str = "",
) -> User:
    validate_username(username)
    validate_email(email)
    if password is not None:
        validate_password(password)
    errors = []
    if name_is_taken(session, username):
        errors.append(FieldError("User", "login", "already_exists", "username is already taken"))
    if session.scalar(select(Email.id).where(Email.lower_email == email.lower())):
        errors.append(FieldError("User", "email", "already_exists", "email is already in use"))
    if errors:
        raise ValidationFailed(errors)
    user = User(
        kind=AccountKind.USER,
        username=username,
        lower_username=username.lower(),
        full_name=full_name[:255],
        password_hash=hash_password(password) if password is not None else None,
        is_site_admin=is_site_admin,
    )
    user.emails.append(
        Email(email=email, lower_email=email.lower(), is_primary=True, is_verified=email_verified)
    )
    session.add(user)
    session.flush()
    return user


def sign_up(session: Session, username: str, email: str, password: str) -> User:
    """Self-service sign-up: the first account on a fresh instance becomes site admin."""
    first = count_users(session) == 0
    return create_user(session, username, email, password, is_site_admin=first)


def authenticate_password(session: Session, login: str, password: str) -> User | None:
    """`login` is a username or an email address. Returns None for any failure, in equal time."""
    if not login or not password or len(login) > 254 or len(password) > MAX_PASSWORD_LENGTH:
        return None
    user = get_user_by_email(session, login) if "@" in login else get_user(session, login)
    if user is None or not user.is_active or user.kind != AccountKind.USER:
        _burn_password_time(password)
        return None
    if not check_password(user, password):
        return None
    user.last_login_at = utcnow()
    return user


# Personal access tokens ------------------------------------------------------------------------


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = [scope for scope in scopes if scope not in KNOWN_SCOPES]
    if unknown:
        raise ValidationFailed.invalid(
            "OauthAccess", "scopes", f"unknown scope(s): {', '.join(sorted(unknown))}"
        )
    return sorted(set(scopes))


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and len(value) == len(TOKEN_PREFIX) + _TOKEN_BODY_LENGTH


def create_token(
    session: Session,
    user: User,
    name: str,
    scopes: list[str],
    expires_days: int | None = None,
) -> tuple[AccessToken, str]:
    """Returns the record and the token itself, which is never stored and shown only once."""
    name = (name or "").strip()
    if not name or len(name) > 255 or "\x00" in name:
        raise ValidationFailed.invalid("OauthAccess", "note", "must be 1 to 255 characters")
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise ValidationFailed.invalid("OauthAccess", "expires", "must be 1 to 3650 days")
    plaintext = TOKEN_PREFIX + "".join(
        secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_BODY_LENGTH)
    )
    token = AccessToken(
        user_id=user.id,
        name=name,
        token_hash=sha256_hex(plaintext),
        token_last_eight=plaintext[-8:],
        scopes=",".join(validate_scopes(scopes)),
        expires_at=utcnow() + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(token)
    session.flush()
    return token, plaintext


# Built once: every API call with a token runs it, and composing the statement costs more
# than executing it from SQLAlchemy's compiled cache.
_TOKEN_BY_HASH = select(AccessToken).where(AccessToken.token_hash == bindparam("token_hash"))


def authenticate_token(session: Session, plaintext: str) -> AccessToken | None:
    if not looks_like_token(plaintext):
        return None
    token = session.scalar(_TOKEN_BY_HASH, {"token_hash": sha256_hex(plaintext)})
    now = utcnow()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def actor_for_token(token: AccessToken) -> Actor:
    return Actor(
        user=token.user,
        method="token",
        scopes=expand_scopes(token.scope_list),
        token_id=token.id,
        token_scopes=tuple(token.scope_list),
    )


# Other kinds of bearer secrets (signed JWTs, CI job tokens) are resolved by their own domains,
# tried in this order after personal access tokens. Each takes (session, secret) and returns an
# Actor, or None when the secret is not of its kind; a secret of its kind that fails verification
# also returns None. Named here, imported lazily, so accounts depends on no other domain.
TOKEN_RESOLVERS = (
    "opencodehub.accounts.oauthapps.service:actor_for_oauth_token",
    "opencodehub.accounts.jwt.service:actor_for_jwt",
    "opencodehub.actions.tokens:actor_for_job_token",
)


def _token_resolvers() -> list[Callable[[Session, str], Actor | None]]:
    resolvers = []
    for dotted in TOKEN_RESOLVERS:
        module_name, _, attribute = dotted.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        resolver = getattr(module, attribute, None)
        if resolver is not None:
            resolvers.append(resolver)
    return resolvers


def actor_for_secret(session: Session, secret: str) -> Actor | None:
    """The actor a bearer secret stands for: a PAT, a JWT or a CI job token; None if none."""
    if looks_like_token(secret):
        token = authenticate_token(session, secret)
        return actor_for_token(token) if token else None
    for resolver in _token_resolvers():
        actor = resolver(session, secret)
        if actor is not None:
            return actor
    return None


def authenticate_basic(session: Session, username: str, secret: str) -> Actor | None:
    """HTTP Basic as git and the API use it: a password, or a token in place of one.

    With a token the username is not checked against the token's owner, as GitHub does not.
    A password is refused (with a message saying so) for an account with two-factor
    authentication: it would bypass the second factor.
    """
    actor = actor_for_secret(session, secret)
    if actor is not None or looks_like_token(secret):
        return actor
    user = authenticate_password(session, username, secret)
    if user is None:
        return None
    from opencodehub.accounts.security.service import refuse_password_if_two_factor

    refuse_password_if_two_factor(session, user)
    return Actor(user=user, method="password")


# Web sessions ----------------------------------------------------------------------------------

SESSION_COOKIE = "och_session"
# last_seen_at is refreshed at most this often, so page views stay reads.
_SESSION_TOUCH_RESOLUTION = timedelta(minutes=5)


def start_web_session(
    session: Session, user: User, *, max_age_days: int, ip_address: str = "", user_agent: str = ""
) -> tuple[WebSession, str]:
    """Returns the record and the cookie value; only the value's hash is stored."""
    cookie_value = secrets.token_urlsafe(32)
    now = utcnow()
    record = WebSession(
        user_id=user.id,
        session_hash=sha256_hex(cookie_value),
        ip_address=ip_address[:64],
        user_agent=user_agent[:512],
        last_seen_at=now,
        expires_at=now + timedelta(days=max_age_days),
    )
    session.add(record)
    session.flush()
    return record, cookie_value


# Built once: every signed-in page view runs it.
_WEB_SESSION_BY_HASH = select(WebSession).where(
    WebSession.session_hash == bindparam("session_hash")
)


def get_web_session(session: Session, cookie_value: str | None) -> WebSession | None:
    if not cookie_value or len(cookie_value) > 128:
        return None
    record = session.scalar(_WEB_SESSION_BY_HASH, {"session_hash": sha256_hex(cookie_value)})
    now = utcnow()
    if record is None or record.expires_at <= now or not record.user.is_active:
        return None
    if now - record.last_seen_at > _SESSION_TOUCH_RESOLUTION:
        record.last_seen_at = now
    return record


def end_web_session(session: Session, cookie_value: str | None) -> None:
    if cookie_value:
        session.execute(
            delete(WebSession).where(WebSession.session_hash == sha256_hex(cookie_value))
        )


def revoke_web_session(session: Session, user: User, session_id: int) -> None:
    """End one of the user's signed-in browsers; NotFound for anyone else's."""
    record = session.scalar(
        select(WebSession).where(WebSession.id == session_id, WebSession.user_id == user.id)
    )
    if record is None:
        raise NotFound()
    session.delete(record)
    session.flush()


def list_web_sessions(session: Session, user: User) -> list[WebSession]:
    """The user's live browser sessions, most recently seen first."""
    return list(
        session.scalars(
            select(WebSession)
            .where(WebSession.user_id == user.id, WebSession.expires_at > utcnow())
            .order_by(WebSession.last_seen_at.desc(), WebSession.id.desc())
        )
    )


def revoke_all_web_sessions(session: Session, user: User, except_id: int | None = None) -> int:
    """Sign the user out everywhere (but in `except_id`, the caller's own browser). Returns how
    many sessions ended."""
    statement = delete(WebSession).where(WebSession.user_id == user.id)
    if except_id is not None:
        statement = statement.where(WebSession.id != except_id)
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


# Profile ---------------------------------------------------------------------------------------

PROFILE_NAME_MAX_LENGTH = 255
PROFILE_BIO_MAX_LENGTH = 640  # GitHub's limit (160 shown on the profile card)
MAX_EMAILS_PER_USER = 20


def validate_website(website: str, resource: str = "User", field: str = "blog") -> str:
    """An http(s) URL, or a bare host that http:// is put in front of (GitHub does the same)."""
    website = validate_text(website, resource, field, 255)
    if not website:
        return ""
    if "://" not in website:
        website = f"http://{website}"
    parts = urlsplit(website)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValidationFailed.invalid(resource, field, "must be an http or https URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in website:
        raise ValidationFailed.invalid(resource, field, "must be an http or https URL")
    if len(website) > 255:
        raise ValidationFailed.invalid(resource, field, "must be at most 255 characters")
    return website


def update_profile(
    session: Session,
    user: User,
    *,
    full_name: str | None = None,
    bio: str | None = None,
    company: str | None = None,
    location: str | None = None,
    website: str | None = None,
    public_email: str | None = None,
) -> User:
    """Change the given profile fields (None leaves one as it is); all are checked before any is
    written. `public_email` must be one of the user's own addresses, or "" to hide it; for an
    organization it is any valid contact address."""
    resource = "Organization" if user.is_organization else "User"
    changes: dict[str, str] = {}
    if full_name is not None:
        changes["full_name"] = validate_text(full_name, resource, "name", PROFILE_NAME_MAX_LENGTH)
    if bio is not None:
        changes["bio"] = validate_text(bio, resource, "bio", PROFILE_BIO_MAX_LENGTH, multiline=True)
    if company is not None:
        changes["company"] = validate_text(company, resource, "company", 255)
    if location is not None:
        changes["location"] = validate_text(location, resource, "location", 255)
    if website is not None:
        changes["website"] = validate_website(website, resource)
    if public_email is not None:
        public_email = public_email.strip()
        if public_email:
            validate_email(public_email)
            if not user.is_organization and public_email.lower() not in {
                email.lower_email for email in user.emails
            }:
                raise ValidationFailed.invalid(
                    resource, "email", "must be one of your own email addresses"
                )
        changes["public_email"] = public_email
    for attribute, value in changes.items():
        setattr(user, attribute, value)
    session.flush()
    return user


def change_password(session: Session, user: User, current_password: str, new_password: str) -> None:
    """Set a new password after proving the current one (accounts created without a password,
    e.g. by an admin or an OAuth sign-in, set their first one with any `current_password`)."""
    if user.password_hash and not check_password(user, current_password or ""):
        raise ValidationFailed.invalid("User", "current_password", "is not correct")
    validate_password(new_password)
    user.password_hash = hash_password(new_password)
    session.flush()


# Emails ----------------------------------------------------------------------------------------


def _users_email(session: Session, user: User, email_id: int) -> Email:
    email = session.scalar(select(Email).where(Email.id == email_id, Email.user_id == user.id))
    if email is None:
        raise NotFound()
    return email


def add_email(session: Session, user: User, email: str) -> Email:
    email = validate_email((email or "").strip())
    if session.scalar(select(Email.id).where(Email.lower_email == email.lower())):
        raise ValidationFailed.exists("User", "email", "email is already in use")
    if len(user.emails) >= MAX_EMAILS_PER_USER:
        raise ValidationFailed.invalid(
            "User", "email", f"an account may have at most {MAX_EMAILS_PER_USER} addresses"
        )
    record = Email(
        email=email,
        lower_email=email.lower(),
        is_primary=not user.emails,
        is_verified=False,
    )
    user.emails.append(record)
    session.flush()
    return record


def remove_email(session: Session, user: User, email_id: int) -> None:
    email = _users_email(session, user, email_id)
    if email.is_primary:
        raise ValidationFailed.invalid(
            "User", "email", "the primary address cannot be removed; make another primary first"
        )
    if len(user.emails) <= 1:
        raise ValidationFailed.invalid("User", "email", "an account needs at least one address")
    if user.public_email.lower() == email.lower_email:
        user.public_email = ""
    user.emails.remove(email)
    session.flush()


def set_primary_email(session: Session, user: User, email_id: int) -> Email:
    chosen = _users_email(session, user, email_id)
    for email in user.emails:
        email.is_primary = email.id == chosen.id
    session.flush()
    return chosen


# SSH keys and deploy keys ----------------------------------------------------------------------

KEY_TITLE_MAX_LENGTH = 255
FINGERPRINT_RE = re.compile(r"\ASHA256:[A-Za-z0-9+/]{43}\Z")


def _new_key(session: Session, title: str, key_text: str) -> SSHKey:
    """Parse and check a key for either owner kind; the caller sets the owner."""
    title = validate_text(title or "", "PublicKey", "title", KEY_TITLE_MAX_LENGTH)
    try:
        parsed = parse_public_key(key_text)
    except InvalidKey as exc:
        raise ValidationFailed(FieldError("PublicKey", "key", "invalid", str(exc))) from None
    if find_ssh_key_by_fingerprint(session, parsed.fingerprint) is not None:
        raise ValidationFailed.exists("PublicKey", "key", "key is already in use")
    return SSHKey(
        # GitHub names an untitled key by its comment, or leaves a generic title.
        title=title or parsed.comment[:KEY_TITLE_MAX_LENGTH] or parsed.key_type,
        key_type=parsed.key_type,
        public_key=parsed.openssh,
        fingerprint=parsed.fingerprint,
    )


def add_ssh_key(session: Session, user: User, title: str, key_text: str) -> SSHKey:
    if user.is_organization:
        raise ValidationFailed.invalid("PublicKey", "user", "organizations have no SSH keys")
    key = _new_key(session, title, key_text)
    key.user_id = user.id
    key.read_only = False
    session.add(key)
    session.flush()
    return key


def list_ssh_keys(session: Session, user: User) -> list[SSHKey]:
    return list(
        session.scalars(select(SSHKey).where(SSHKey.user_id == user.id).order_by(SSHKey.id))
    )


def get_ssh_key(session: Session, user: User, key_id: int) -> SSHKey:
    key = session.scalar(select(SSHKey).where(SSHKey.id == key_id, SSHKey.user_id == user.id))
    if key is None:
        raise NotFound()
    return key


def delete_ssh_key(session: Session, user: User, key_id: int) -> None:
    session.delete(get_ssh_key(session, user, key_id))
    session.flush()


def find_ssh_key_by_fingerprint(session: Session, fingerprint: str) -> SSHKey | None:
    """The user key or deploy key with this `SHA256:` fingerprint (a unique index)."""
    if not isinstance(fingerprint, str) or not FINGERPRINT_RE.match(fingerprint):
        return None
    return session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint))


def actor_for_ssh_key(session: Session, key: SSHKey) -> Actor | None:
    """Who an authenticated SSH key speaks for: its user, or its repository as a deploy key.
    None when the key's user is disabled. Records the use (at most once a minute)."""
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
        key.last_used_at = now
    if key.repository_id is not None:
        return Actor(
            user=None,
            method="deploy_key",
            deploy_key_repository_id=key.repository_id,
            deploy_key_read_only=key.read_only,
        )
    user = session.get(User, key.user_id) if key.user_id is not None else None
    if user is None or not user.is_active or user.is_organization:
        return None
    return Actor(user=user, method="ssh_key")


def add_deploy_key(
    session: Session, repository: Repository, title: str, key_text: str, read_only: bool = True
) -> SSHKey:
    key = _new_key(session, title, key_text)
    key.repository_id = repository.id
    key.read_only = bool(read_only)
    session.add(key)
    session.flush()
    return key


def list_deploy_keys(session: Session, repository: Repository) -> list[SSHKey]:
    return list(
        session.scalars(
            select(SSHKey).where(SSHKey.repository_id == repository.id).order_by(SSHKey.id)
        )
    )


def get_deploy_key(session: Session, repository: Repository, key_id: int) -> SSHKey:
    key = session.scalar(
        select(SSHKey).where(SSHKey.id == key_id, SSHKey.repository_id == repository.id)
    )
    if key is None:
        raise NotFound()
    return key


def delete_deploy_key(session: Session, repository: Repository, key_id: int) -> None:
    session.delete(get_deploy_key(session, repository, key_id))
    session.flush()


# Token management ------------------------------------------------------------------------------


def list_tokens(session: Session, user: User) -> list[AccessToken]:
    """The user's tokens that are not revoked (expired ones included, to be shown as such)."""
    return list(
        session.scalars(
            select(AccessToken)
            .where(AccessToken.user_id == user.id, AccessToken.revoked_at.is_(None))
            .order_by(AccessToken.id.desc())
        )
    )


def revoke_token(session: Session, user: User, token_id: int) -> None:
    token = session.scalar(
        select(AccessToken).where(
            AccessToken.id == token_id,
            AccessToken.user_id == user.id,
            AccessToken.revoked_at.is_(None),
        )
    )
    if token is None:
        raise NotFound()
    token.revoked_at = utcnow()
    session.flush()


# Organizations ---------------------------------------------------------------------------------


def create_organization(
    session: Session, creator: User, login: str, *, full_name: str = "", email: str = ""
) -> User:
    """A new organization whose first owner is `creator`; names share the users' namespace."""
    if creator.is_organization or not creator.is_active:
        raise ValidationFailed.invalid("Organization", "admin", "must be an active user")
    validate_username(login, "Organization", "login")
    full_name = validate_text(full_name, "Organization", "profile_name", PROFILE_NAME_MAX_LENGTH)
    email = (email or "").strip()
    if email:
        validate_email(email)
    if name_is_taken(session, login):
        raise ValidationFailed.exists("Organization", "login", "name is already taken")
    org = User(
        kind=AccountKind.ORGANIZATION,
        username=login,
        lower_username=login.lower(),
        full_name=full_name,
        public_email=email,
        password_hash=None,
    )
    session.add(org)
    session.flush()
    session.add(OrgMembership(org_id=org.id, user_id=creator.id, role=OrgRole.OWNER))
    session.flush()
    return org


def get_organization(session: Session, login: str) -> User | None:
    account = get_account(session, login)
    if account is None or not account.is_organization:
        return None
    return account


def _membership(session: Session, org: User, user: User) -> OrgMembership | None:
    return session.scalar(
        select(OrgMembership).where(
            OrgMembership.org_id == org.id, OrgMembership.user_id == user.id
        )
    )


def _count_owners(session: Session, org: User) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(OrgMembership)
            .where(OrgMembership.org_id == org.id, OrgMembership.role == OrgRole.OWNER)
        )
        or 0
    )


def _refuse_losing_last_owner(session: Session, org: User, membership: OrgMembership) -> None:
    if membership.role == OrgRole.OWNER and _count_owners(session, org) <= 1:
        raise ValidationFailed(
            FieldError(
                "Membership",
                "role",
                "custom",
                "an organization must keep at least one owner",
            )
        )


def add_org_member(
    session: Session, org: User, user: User, role: OrgRole = OrgRole.MEMBER
) -> OrgMembership:
    if not org.is_organization:
        raise NotFound()
    if user.is_organization or not user.is_active:
        raise ValidationFailed.invalid("Membership", "user", "must be an active user")
    if _membership(session, org, user) is not None:
        raise ValidationFailed.exists("Membership", "user", "is already a member")
    membership = OrgMembership(org_id=org.id, user_id=user.id, role=OrgRole(role))
    session.add(membership)
    session.flush()
    return membership


def set_org_role(session: Session, org: User, user: User, role: OrgRole) -> OrgMembership:
    """Change a member's role; NotFound when `user` is not a member."""
    membership = _membership(session, org, user)
    if membership is None:
        raise NotFound()
    role = OrgRole(role)
    if membership.role != role:
        _refuse_losing_last_owner(session, org, membership)
        membership.role = role
        session.flush()
    return membership


def put_org_membership(
    session: Session, org: User, user: User, role: OrgRole = OrgRole.MEMBER
) -> OrgMembership:
    """Add the user with `role`, or change their role when they are a member (GitHub's PUT)."""
    if _membership(session, org, user) is None:
        return add_org_member(session, org, user, role)
    return set_org_role(session, org, user, role)


def get_org_membership(session: Session, org: User, user: User) -> OrgMembership | None:
    return _membership(session, org, user)


def remove_org_member(session: Session, org: User, user: User) -> None:
    """Remove the user from the organization and its teams; never its last owner."""
    membership = _membership(session, org, user)
    if membership is None:
        raise NotFound()
    _refuse_losing_last_owner(session, org, membership)
    team_ids = select(Team.id).where(Team.org_id == org.id)
    session.execute(
        delete(TeamMember).where(TeamMember.user_id == user.id, TeamMember.team_id.in_(team_ids))
    )
    session.delete(membership)
    session.flush()


def list_org_members(session: Session, org: User, role: OrgRole | None = None) -> list[User]:
    statement = (
        select(User)
        .join(OrgMembership, OrgMembership.user_id == User.id)
        .where(OrgMembership.org_id == org.id)
        .order_by(User.lower_username)
    )
    if role is not None:
        statement = statement.where(OrgMembership.role == OrgRole(role))
    return list(session.scalars(statement))


def list_user_orgs(session: Session, user: User) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .join(OrgMembership, OrgMembership.org_id == User.id)
            .where(OrgMembership.user_id == user.id, User.is_active.is_(True))
            .order_by(User.lower_username)
        )
    )


# Teams -----------------------------------------------------------------------------------------

TEAM_PRIVACY = ("closed", "secret")
TEAM_ROLES = ("member", "maintainer")
TEAM_DESCRIPTION_MAX_LENGTH = 1024


def create_team(
    session: Session,
    org: User,
    name: str,
    *,
    description: str = "",
    permission: Permission = Permission.READ,
    privacy: str = "closed",
) -> Team:
    if not org.is_organization:
        raise NotFound()
    name = validate_team_name(name)
    description = validate_text(
        description or "", "Team", "description", TEAM_DESCRIPTION_MAX_LENGTH, multiline=True
    )
    if privacy not in TEAM_PRIVACY:
        raise ValidationFailed.invalid("Team", "privacy", "must be 'closed' or 'secret'")
    try:
        permission = Permission(permission)
    except ValueError:
        raise ValidationFailed.invalid("Team", "permission", "is not a permission") from None
    slug = team_slug(name)
    if get_team(session, org, slug) is not None:
        raise ValidationFailed.exists("Team", "name", "a team with this name already exists")
    team = Team(
        org_id=org.id,
        name=name,
        slug=slug,
        description=description,
        permission=permission,
        privacy=privacy,
    )
    session.add(team)
    session.flush()
    return team


def list_teams(session: Session, org: User) -> list[Team]:
    return list(session.scalars(select(Team).where(Team.org_id == org.id).order_by(Team.slug)))


def get_team(session: Session, org: User, slug: str) -> Team | None:
    if not isinstance(slug, str) or len(slug) > 255 or not TEAM_SLUG_RE.match(slug):
        return None
    return session.scalar(select(Team).where(Team.org_id == org.id, Team.slug == slug.lower()))


def list_user_teams(session: Session, org: User, user: User) -> list[Team]:
    """The teams of `org` that `user` belongs to."""
    return list(
        session.scalars(
            select(Team)
            .join(TeamMember, TeamMember.team_id == Team.id)
            .where(Team.org_id == org.id, TeamMember.user_id == user.id)
            .order_by(Team.slug)
        )
    )


def get_team_membership(session: Session, team: Team, user: User) -> TeamMember | None:
    return session.scalar(
        select(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id == user.id)
    )


def add_team_member(session: Session, team: Team, user: User, role: str = "member") -> TeamMember:
    """Add an organization member to the team, or change their team role if already in it."""
    if role not in TEAM_ROLES:
        raise ValidationFailed.invalid("TeamMember", "role", "must be 'member' or 'maintainer'")
    org = session.get(User, team.org_id)
    if org is None or _membership(session, org, user) is None:
        raise ValidationFailed.invalid(
            "TeamMember", "user", "must be a member of the organization first"
        )
    member = get_team_membership(session, team, user)
    if member is None:
        member = TeamMember(team_id=team.id, user_id=user.id, role=role)
        session.add(member)
    else:
        member.role = role
    session.flush()
    return member


def remove_team_member(session: Session, team: Team, user: User) -> None:
    member = get_team_membership(session, team, user)
    if member is None:
        raise NotFound()
    session.delete(member)
    session.flush()


def list_team_members(session: Session, team: Team, role: str | None = None) -> list[User]:
    statement = (
        select(User)
        .join(TeamMember, TeamMember.user_id == User.id)
        .where(TeamMember.team_id == team.id)
        .order_by(User.lower_username)
    )
    if role is not None:
        statement = statement.where(TeamMember.role == role)
    return list(session.scalars(statement))


def count_team_members(session: Session, team: Team) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(TeamMember).where(TeamMember.team_id == team.id)
        )
        or 0
    )
