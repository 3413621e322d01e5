"""Security keys and passkeys as a second factor (WebAuthn Level 2, through py_webauthn).

The relying party is the instance itself: its id is the host of `base_url`, the only origin
accepted is `base_url`'s. Challenges are kept server-side (one outstanding per user and purpose,
valid for five minutes, consumed by the first verification attempt).
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from opencodehub.accounts.models import User
from opencodehub.accounts.security.models import WebAuthnChallenge, WebAuthnCredential
from opencodehub.config import Settings
from opencodehub.core.crypto import sha256_hex
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.time import utcnow

if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

# py_webauthn (with its CBOR, ASN.1 and certificate parsers, about 5 MB) is imported by the
# functions that make or check a ceremony, not when the server starts.

CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_KEYS_PER_USER = 20
MAX_CREDENTIAL_JSON = 64 * 1024


@functools.cache
def _known_transports() -> frozenset[str]:
    from webauthn.helpers.structs import AuthenticatorTransport

    return frozenset(transport.value for transport in AuthenticatorTransport)


def bytes_to_base64url(value: bytes) -> str:
    """WebAuthn's unpadded base64url, as py_webauthn writes it (stored ids use this form)."""
    return base64.urlsafe_b64encode(value).decode("ascii").rstrip("=")


def base64url_to_bytes(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def relying_party(settings: Settings) -> tuple[str, str]:
    """(rp id, origin) of this instance."""
    origin = settings.effective_base_url
    parts = urlsplit(origin)
    return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"


def list_keys(session: Session, user: User) -> list[WebAuthnCredential]:
    return list(
        session.scalars(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user.id)
            .order_by(WebAuthnCredential.id)
        )
    )


def _descriptors(session: Session, user: User) -> list[PublicKeyCredentialDescriptor]:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    descriptors = []
    for key in list_keys(session, user):
        transports = [AuthenticatorTransport(value) for value in key.transports.split(",") if value]
        descriptors.append(
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(key.credential_id), transports=transports or None
            )
        )
    return descriptors


def _store_challenge(session: Session, user: User, purpose: str, challenge: bytes) -> None:
    session.execute(
        delete(WebAuthnChallenge).where(
            WebAuthnChallenge.user_id == user.id, WebAuthnChallenge.purpose == purpose
        )
    )
    session.add(
        WebAuthnChallenge(
            user_id=user.id,
            purpose=purpose,
            challenge=bytes_to_base64url(challenge),
            expires_at=utcnow() + CHALLENGE_LIFETIME,
        )
    )
    session.flush()


def _take_challenge(session: Session, user: User, purpose: str) -> bytes | None:
    """The outstanding challenge, consumed: a response can be tried once only."""
    record = session.scalar(
        select(WebAuthnChallenge).where(
            WebAuthnChallenge.user_id == user.id, WebAuthnChallenge.purpose == purpose
        )
    )
    if record is None:
        return None
    session.delete(record)
    session.flush()
    if record.expires_at <= utcnow():
        return None
    return base64url_to_bytes(record.challenge)


def _parse(credential_json: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(credential_json, dict):
        return credential_json
    if len(credential_json) > MAX_CREDENTIAL_JSON:
        raise ValidationFailed.invalid("SecurityKey", "credential", "is too large")
    try:
        parsed = json.loads(credential_json)
    except ValueError:
        raise ValidationFailed.invalid("SecurityKey", "credential", "is not JSON") from None
    if not isinstance(parsed, dict):
        raise ValidationFailed.invalid("SecurityKey", "credential", "is not a credential")
    return parsed


def registration_options(session: Session, settings: Settings, user: User) -> dict[str, Any]:
    import webauthn
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    rp_id, _ = relying_party(settings)
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name="OpenCodeHub",
        user_name=user.username,
        user_id=str(user.id).encode(),
        user_display_name=user.full_name or user.username,
        exclude_credentials=_descriptors(session, user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.DISCOURAGED,
        ),
    )
    _store_challenge(session, user, "register", options.challenge)
    return json.loads(webauthn.options_to_json(options))


def register(
    session: Session,
    settings: Settings,
    user: User,
    name: str,
    credential_json: str | dict[str, Any],
) -> WebAuthnCredential:
    """Verify an attestation against the outstanding challenge and store the key."""
    import webauthn
    from webauthn.helpers.exceptions import WebAuthnException

    name = (name or "").strip()
    if not name or len(name) > 255 or any(ord(char) < 0x20 for char in name):
        raise ValidationFailed.invalid("SecurityKey", "name", "must be 1 to 255 characters")
    if len(list_keys(session, user)) >= MAX_KEYS_PER_USER:
        raise ValidationFailed.invalid("SecurityKey", "name", "too many security keys")
    credential = _parse(credential_json)
    challenge = _take_challenge(session, user, "register")
    if challenge is None:
        raise ValidationFailed.invalid("SecurityKey", "credential", "the request has expired")
    rp_id, origin = relying_party(settings)
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise ValidationFailed.invalid(
            "SecurityKey", "credential", f"could not be verified: {str(exc)[:200]}"
        ) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if session.scalar(
        select(WebAuthnCredential.id).where(
            WebAuthnCredential.credential_id_hash == sha256_hex(credential_id)
        )
    ):
        raise ValidationFailed.invalid("SecurityKey", "credential", "is already registered")
    response = credential.get("response")
    raw_transports = response.get("transports", []) if isinstance(response, dict) else []
    transports = [
        value for value in raw_transports if isinstance(value, str) and value in _known_transports()
    ]
    key = WebAuthnCredential(
        user_id=user.id,
        name=name,
        credential_id=credential_id,
        credential_id_hash=sha256_hex(credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        transports=",".join(transports)[:255],
        aaguid=str(verified.aaguid)[:64],
    )
    session.add(key)
    session.flush()
    return key


def authentication_options(
    session: Session, settings: Settings, user: User, purpose: str = "authenticate"
) -> dict[str, Any]:
    import webauthn
    from webauthn.helpers.structs import UserVerificationRequirement

    rp_id, _ = relying_party(settings)
    descriptors = _descriptors(session, user)
    if not descriptors:
        raise NotFound("No security key is registered")
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=descriptors,
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    _store_challenge(session, user, purpose, options.challenge)
    return json.loads(webauthn.options_to_json(options))


def authenticate(
    session: Session,
    settings: Settings,
    user: User,
    credential_json: str | dict[str, Any],
    purpose: str = "authenticate",
) -> WebAuthnCredential | None:
    """Verify an assertion by one of the user's keys; None when it does not verify.

    A signature counter that did not grow (when the key keeps one) means a cloned key: refused.
    """
    import webauthn
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        credential = _parse(credential_json)
    except ValidationFailed:
        return None
    challenge = _take_challenge(session, user, purpose)
    raw_id = credential.get("rawId") or credential.get("id")
    if challenge is None or not isinstance(raw_id, str) or len(raw_id) > 2048:
        return None
    key = session.scalar(
        select(WebAuthnCredential).where(
            WebAuthnCredential.credential_id_hash == sha256_hex(raw_id),
            WebAuthnCredential.user_id == user.id,
        )
    )
    if key is None:
        return None
    rp_id, origin = relying_party(settings)
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=base64url_to_bytes(key.public_key),
            credential_current_sign_count=key.sign_count,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        return None
    key.sign_count = verified.new_sign_count
    key.last_used_at = utcnow()
    session.flush()
    return key


def remove_key(session: Session, user: User, key_id: int) -> WebAuthnCredential:
    key = session.scalar(
        select(WebAuthnCredential).where(
            WebAuthnCredential.id == key_id, WebAuthnCredential.user_id == user.id
        )
    )
    if key is None:
        raise NotFound()
    session.delete(key)
    session.flush()
    return key
