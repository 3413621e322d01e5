"""Account security logic: TOTP devices, recovery codes, the pending second-factor sign-in,
challenge throttling and sudo grants. The only code that writes these tables (with webauthn.py
for security keys and audit.py for the log)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User, WebSession
from opencodehub.accounts.security import totp
from opencodehub.accounts.security.models import (
    RecoveryCode,
    SudoGrant,
    TotpDevice,
    WebAuthnChallenge,
    WebAuthnCredential,
)
from opencodehub.core import crypto
from opencodehub.core.errors import TooManyRequests, Unauthorized, ValidationFailed
from opencodehub.core.ratelimit import RateLimiter
from opencodehub.core.time import utcnow

RECOVERY_CODE_COUNT = 10
SUDO_DURATION = timedelta(minutes=10)
PENDING_COOKIE = "och_2fa"
PENDING_LIFETIME_SECONDS = 300
_PENDING_PURPOSE = "two-factor:pending"
# Wrong second factors allowed per account within one window before the challenge locks.
CHALLENGE_MAX_FAILURES = 5
CHALLENGE_WINDOW_SECONDS = 300
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read off paper


# Second factors ---------------------------------------------------------------------------------


def totp_device(session: Session, user: User) -> TotpDevice | None:
    return session.scalar(select(TotpDevice).where(TotpDevice.user_id == user.id))


def has_totp(session: Session, user: User) -> bool:
    device = totp_device(session, user)
    return device is not None and device.confirmed_at is not None


def count_security_keys(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user.id)
        )
        or 0
    )


def has_two_factor(session: Session, user: User) -> bool:
    """Whether signing in to this account asks for a second factor."""
    return has_totp(session, user) or count_security_keys(session, user) > 0


def start_totp_enrolment(session: Session, secret_key: bytes, user: User) -> str:
    """A new secret to scan. It replaces an unconfirmed one; an active device stays until the
    new one is confirmed only through `disable_two_factor` (enrolment needs 2FA off)."""
    device = totp_device(session, user)
    if device is not None and device.confirmed_at is not None:
        raise ValidationFailed.invalid(
            "TwoFactor", "totp", "two-factor authentication with an app is already enabled"
        )
    secret = totp.new_secret()
    if device is None:
        device = TotpDevice(user_id=user.id, secret_encrypted="")
        session.add(device)
    device.secret_encrypted = crypto.encrypt(secret_key, secret)
    device.last_step = 0
    session.flush()
    return secret


def pending_totp_secret(session: Session, secret_key: bytes, user: User) -> str | None:
    device = totp_device(session, user)
    if device is None or device.confirmed_at is not None:
        return None
    return crypto.decrypt(secret_key, device.secret_encrypted)


def _accept_step(session: Session, device: TotpDevice, step: int) -> bool:
    """Record `step` as used, atomically: of two requests with the same code only one wins."""
    result = session.execute(
        update(TotpDevice)
        .where(TotpDevice.id == device.id, TotpDevice.last_step < step)
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        return False
    session.expire(device, ["last_step"])
    return True


def confirm_totp(session: Session, secret_key: bytes, user: User, code: str) -> list[str] | None:
    """Activate the pending device with a code from the app. Returns new recovery codes when the
    account had none (the first second factor), else None."""
    device = totp_device(session, user)
    if device is None or device.confirmed_at is not None:
        raise ValidationFailed.invalid("TwoFactor", "code", "start the set-up again")
    secret = crypto.decrypt(secret_key, device.secret_encrypted)
    step = totp.matching_step(secret, code)
    if step is None or not _accept_step(session, device, step):
        raise ValidationFailed.invalid(
            "TwoFactor", "code", "is not the current code of your authenticator app"
        )
    device.confirmed_at = utcnow()
    session.flush()
    return first_recovery_codes(session, user)


def verify_totp(session: Session, secret_key: bytes, user: User, code: str) -> bool:
    """A code of the active device, for a time step not used before."""
    device = totp_device(session, user)
    if device is None or device.confirmed_at is None:
        return False
    step = totp.matching_step(crypto.decrypt(secret_key, device.secret_encrypted), code)
    return step is not None and _accept_step(session, device, step)


def disable_two_factor(session: Session, user: User) -> None:
    """Remove every second factor and the recovery codes."""
    for model in (TotpDevice, WebAuthnCredential, RecoveryCode, WebAuthnChallenge):
        session.execute(delete(model).where(model.user_id == user.id))  # type: ignore[attr-defined]
    session.flush()


# Recovery codes ---------------------------------------------------------------------------------


def _normalize_recovery(code: str) -> str:
    return "".join(char for char in (code or "").lower() if char.isalnum())[:64]


def _new_recovery_code() -> str:
    body = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{body[:5]}-{body[5:]}"


def generate_recovery_codes(session: Session, user: User) -> list[str]:
    """Replace every recovery code with ten new ones; they are shown once and stored hashed."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=crypto.sha256_hex(_normalize_recovery(code)))
        for code in codes
    )
    session.flush()
    return codes


def first_recovery_codes(session: Session, user: User) -> list[str] | None:
    existing = session.scalar(
        select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == user.id)
    )
    return None if existing else generate_recovery_codes(session, user)


def remaining_recovery_codes(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def use_recovery_code(session: Session, user: User, code: str) -> bool:
    normalized = _normalize_recovery(code)
    if len(normalized) != 10:
        return False
    result = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == crypto.sha256_hex(normalized),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


# The pending sign-in ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in whose first step (password, external provider) succeeded; the real session
    starts only after the second factor (`purpose` "challenge") or, for an admin who must have
    one, after enrolling it (`purpose` "enrol")."""

    user_id: int
    method: str
    next_path: str
    purpose: str
    expires: int
    # An external identity waiting to be linked to this account (`SSOPendingSignIn.id`, 0 for
    # none): it is linked only once the second step succeeds, never on the password alone.
    link: int = 0


def encode_pending(secret_key: bytes, pending: PendingSignIn) -> str:
    payload = json.dumps(
        [
            pending.user_id,
            pending.method,
            pending.next_path,
            pending.purpose,
            pending.expires,
            pending.link,
        ],
        separators=(",", ":"),
    )
    body = base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()
    return f"{body}.{crypto.sign(secret_key, _PENDING_PURPOSE, body)}"


def new_pending(
    secret_key: bytes,
    user_id: int,
    method: str,
    next_path: str,
    purpose: str = "challenge",
    *,
    link: int = 0,
) -> str:
    return encode_pending(
        secret_key,
        PendingSignIn(
            user_id,
            method[:40],
            next_path,
            purpose,
            int(time.time()) + PENDING_LIFETIME_SECONDS,
            link,
        ),
    )


def decode_pending(secret_key: bytes, value: str | None) -> PendingSignIn | None:
    """The pending sign-in a cookie names; None when missing, forged or expired."""
    if not value or len(value) > 4096 or "." not in value:
        return None
    body, _, signature = value.rpartition(".")
    if not crypto.verify(secret_key, _PENDING_PURPOSE, body, signature):
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        user_id, method, next_path, purpose, expires, link = raw
        pending = PendingSignIn(
            int(user_id), str(method), str(next_path), str(purpose), int(expires), int(link)
        )
    except (ValueError, TypeError):
        return None
    if pending.expires < time.time() or pending.purpose not in ("challenge", "enrol"):
        return None
    return pending


# Throttling the challenge ------------------------------------------------------------------------


class ChallengeThrottled(TooManyRequests):
    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        super().__init__(
            "Too many failed two-factor attempts. Try again in a few minutes.",
            headers={"Retry-After": str(self.retry_after_seconds)},
        )


def _challenge_key(user_id: int) -> str:
    return f"two-factor:user:{user_id}"


# Failed codes count in a sliding window, as failed passwords do: fixed windows would let twice
# the guesses through around a window boundary.


def check_challenge(limiter: RateLimiter, user_id: int) -> None:
    window = limiter.peek_sliding(
        _challenge_key(user_id), CHALLENGE_MAX_FAILURES, CHALLENGE_WINDOW_SECONDS
    )
    if not window.allowed:
        raise ChallengeThrottled(window.retry_after)


def record_challenge_failure(limiter: RateLimiter, user_id: int) -> None:
    limiter.hit_sliding(_challenge_key(user_id), CHALLENGE_MAX_FAILURES, CHALLENGE_WINDOW_SECONDS)


def reset_challenge(limiter: RateLimiter, user_id: int) -> None:
    limiter.reset_sliding(_challenge_key(user_id))


# Sudo mode --------------------------------------------------------------------------------------


def grant_sudo(session: Session, web_session: WebSession) -> SudoGrant:
    grant = session.scalar(select(SudoGrant).where(SudoGrant.web_session_id == web_session.id))
    now = utcnow()
    if grant is None:
        grant = SudoGrant(web_session_id=web_session.id, granted_at=now, expires_at=now)
        session.add(grant)
    grant.granted_at = now
    grant.expires_at = now + SUDO_DURATION
    session.flush()
    return grant


def sudo_active(session: Session, web_session: WebSession | None) -> bool:
    if web_session is None:
        return False
    expires_at = session.scalar(
        select(SudoGrant.expires_at).where(SudoGrant.web_session_id == web_session.id)
    )
    return expires_at is not None and expires_at > utcnow()


def sign_out_everywhere(session: Session, user: User) -> int:
    """End every browser session of the user, the caller's own included."""
    return accounts.revoke_all_web_sessions(session, user)


def admin_needs_enrolment(session: Session, user: User, require_for_admins: bool) -> bool:
    return bool(require_for_admins and user.is_site_admin and not has_two_factor(session, user))


class PasswordAuthRefused(Unauthorized):
    default_message = (
        "Password authentication is not available for accounts with two-factor authentication. "
        "Use a personal access token (as the password) or an SSH key instead."
    )


def refuse_password_if_two_factor(session: Session, user: User) -> None:
    """Git over HTTP and the API take a password over Basic auth with no second factor, so an
    account that has one must use a token or an SSH key there."""
    if has_two_factor(session, user):
        raise PasswordAuthRefused()
