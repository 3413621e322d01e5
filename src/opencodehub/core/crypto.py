"""Tokens, digests, signatures and symmetric encryption, all derived from the instance secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

# `cryptography` is imported where it is used: an idle server that decrypts nothing need not
# hold it (it and its OpenSSL bindings are several MB resident).


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str | bytes) -> str:
    if isinstance(value, str):
        value = value.encode()
    return hashlib.sha256(value).hexdigest()


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A separate key per purpose, so one leaked signature never forges another kind."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def sign(secret: bytes, purpose: str, message: str) -> str:
    mac = hmac.new(derive_key(secret, purpose), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify(secret: bytes, purpose: str, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, purpose, message), signature)


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def pkce_s256_challenge(verifier: str) -> str:
    """RFC 7636's S256 `code_challenge` of a `code_verifier`: BASE64URL(SHA256(verifier))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _fernet(secret: bytes) -> Fernet:
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(derive_key(secret, "encryption")))


def encrypt(secret: bytes, plaintext: str) -> str:
    return _fernet(secret).encrypt(plaintext.encode()).decode()


def decrypt(secret: bytes, ciphertext: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(secret).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("cannot decrypt: wrong key or corrupted value") from exc
