"""Accounts logic: the only code that writes the accounts tables."""

from __future__ import annotations

import secrets
import string
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import KNOWN_SCOPES, Actor, expand_scopes
from opencodehub.accounts.models import AccessToken, AccountKind, Email, User, WebSession
from opencodehub.accounts.names import validate_email, validate_username
from opencodehub.core.crypto import sha256_hex
from opencodehub.core.errors import FieldError, ValidationFailed
from opencodehub.core.time import utcnow

TOKEN_PREFIX = "och_"
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_TOKEN_BODY_LENGTH = 40
# Writing last_used_at on every request would turn each API read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

password_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# A hash to verify against when the account does not exist, so timing does not reveal which.
_DUMMY_HASH = password_hasher.hash(secrets.token_hex(16))


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
    try:
        password_hasher.verify(_DUMMY_HASH, password)
    except VerificationError:
        pass


# Users -----------------------------------------------------------------------------------------


def get_account(session: Session, name: str) -> User | None:
    """A user or an organization by name, case-insensitively."""
    if not name or len(name) > 39:
        return None
    return session.scalar(select(User).where(User.lower_username == name.lower()))


def get_user(session: Session, name: str) -> User | None:
    account = get_account(session, name)
    if account is None or account.kind != AccountKind.USER:
        return None
    return account


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(
        select(User).join(Email, Email.user_id == User.id).where(Email.lower_email == email.lower())
    )


def name_is_taken(session: Session, name: str) -> bool:
    return get_account(session, name) is not None


def count_users(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(User).where(User.kind == AccountKind.USER)
    ) or 0


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


def authenticate_token(session: Session, plaintext: str) -> AccessToken | None:
    if not looks_like_token(plaintext):
        return None
    token = session.scalar(
        select(AccessToken).where(AccessToken.token_hash == sha256_hex(plaintext))
    )
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
    )


def authenticate_basic(session: Session, username: str, secret: str) -> Actor | None:
    """HTTP Basic as git and the API use it: a password, or a PAT in place of one.

    With a PAT the username is not checked against the token's owner, as GitHub does not.
    """
    if looks_like_token(secret):
        token = authenticate_token(session, secret)
        return actor_for_token(token) if token else None
    user = authenticate_password(session, username, secret)
    return Actor(user=user, method="password") if user else None


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


def get_web_session(session: Session, cookie_value: str | None) -> WebSession | None:
    if not cookie_value or len(cookie_value) > 128:
        return None
    record = session.scalar(
        select(WebSession).where(WebSession.session_hash == sha256_hex(cookie_value))
    )
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
