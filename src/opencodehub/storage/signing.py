"""HMAC-signed, expiring app URLs: `/-/storage/{key}?expires=…&signature=…`.

The local adapter hands these out as its signed URLs. They are served by `storage.views`, which
streams through whichever adapter is configured, so the same signer also gives a proxied
transfer URL for backends that cannot sign (Google Drive): `signer.sign(key, "PUT", 600)`.

The signature covers the method, the key and the expiry time, with a key derived from the
instance secret for this purpose only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

from opencodehub.core import crypto
from opencodehub.storage.base import (
    SignedMethod,
    SignedURL,
    check_expires,
    check_method,
    validate_key,
)

URL_PREFIX = "/-/storage/"
_PURPOSE = "storage-url"


class AppURLSigner:
    def __init__(self, secret: bytes, base_url: str, clock: Callable[[], float] = time.time):
        if not secret:
            raise ValueError("an app URL signer needs the instance secret")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self._clock = clock  # seconds since the epoch; tests move it

    def sign(self, key: str, method: SignedMethod, expires: int) -> SignedURL:
        key = validate_key(key)
        method = check_method(method)
        expires_at = int(self._clock()) + check_expires(expires)
        signature = crypto.sign(self._secret, _PURPOSE, _message(method, key, expires_at))
        url = (
            f"{self.base_url}{URL_PREFIX}{quote(key, safe='/')}"
            f"?expires={expires_at}&signature={signature}"
        )
        return SignedURL(url, method, datetime.fromtimestamp(expires_at, UTC))

    def verify(self, key: str, method: str, expires_at: str, signature: str) -> bool:
        """Whether the URL's signature matches and it has not expired. HEAD rides on GET."""
        if method == "HEAD":
            method = "GET"
        if method not in ("GET", "PUT") or not expires_at.isdigit() or len(expires_at) > 12:
            return False
        if int(expires_at) < self._clock():
            return False
        return crypto.verify(
            self._secret, _PURPOSE, _message(method, key, int(expires_at)), signature
        )


def _message(method: str, key: str, expires_at: int) -> str:
    return f"{method}\n{key}\n{expires_at}"
