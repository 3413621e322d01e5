"""The Ed25519 keys that sign access tokens, kept as PEM files under `{data}/jwt/`.

`keys.json` names the current key and the retired ones with the time they were retired. After a
rotation a retired key still verifies the tokens it signed until the longest a token can live has
passed; then it is deleted. Every process reads the same directory, so a rotation by the CLI
reaches running app nodes on their next verification (the index file's mtime is checked).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# `cryptography` is imported by the functions that use it, when a token is first signed or
# checked: an app that has not seen one yet need not hold it.

INDEX = "keys.json"
# Tokens live at most this long, so a retired key is kept this long (plus clock leeway).
MAX_TOKEN_LIFETIME = 3600
RETIRED_KEY_GRACE = MAX_TOKEN_LIFETIME + 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: the key id."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass
class KeyRing:
    current_kid: str
    private_key: Ed25519PrivateKey
    public_keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    retired_at: dict[str, int] = field(default_factory=dict)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": _b64url(_raw_public(key)),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                }
                for kid, key in self.public_keys.items()
            ]
        }


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(tmp, path)


def _write_index(directory: Path, current: str, retired: dict[str, int]) -> None:
    tmp = directory / f"{INDEX}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"current": current, "retired": retired}, handle)
    os.replace(tmp, directory / INDEX)


def _new_key(directory: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    kid = thumbprint(key.public_key())
    _write_private(directory / f"{kid}.pem", key)
    return kid


def _ensure_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o700)


def _load(directory: Path) -> KeyRing:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    index = json.loads((directory / INDEX).read_text())
    current = str(index["current"])
    retired = {str(kid): int(at) for kid, at in dict(index.get("retired", {})).items()}
    public_keys: dict[str, Ed25519PublicKey] = {}
    private_key: Ed25519PrivateKey | None = None
    now = int(time.time())
    live = [kid for kid, at in retired.items() if now - at <= RETIRED_KEY_GRACE]
    for kid in [current, *live]:
        path = directory / f"{kid}.pem"
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            continue
        if not isinstance(loaded, Ed25519PrivateKey):
            continue
        public_keys[kid] = loaded.public_key()
        if kid == current:
            private_key = loaded
    if private_key is None:
        raise FileNotFoundError(f"the current JWT signing key {current} is missing")
    return KeyRing(current, private_key, public_keys, retired)


def _prune(directory: Path, retired: dict[str, int], now: int) -> dict[str, int]:
    kept = {}
    for kid, at in retired.items():
        if now - at > RETIRED_KEY_GRACE:
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{kid}.pem").unlink()
        else:
            kept[kid] = at
    return kept


_lock = threading.Lock()
_cache: dict[Path, tuple[float, KeyRing]] = {}


def _index_mtime(directory: Path) -> float | None:
    try:
        return (directory / INDEX).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def keyring(data_dir: Path) -> KeyRing:
    """The key ring of an instance, created on first use; re-read when the index changes."""
    directory = data_dir / "jwt"
    mtime = _index_mtime(directory)
    cached = _cache.get(directory)
    if cached is not None and mtime is not None and cached[0] == mtime:
        return cached[1]
    with _lock:
        mtime = _index_mtime(directory)
        if mtime is None:
            _ensure_directory(directory)
            _write_index(directory, _new_key(directory), {})
            mtime = _index_mtime(directory)
        ring = _load(directory)
        assert mtime is not None
        _cache[directory] = (mtime, ring)
        return ring


# How long a verification trusts the cached key ring without looking at the index file again.
# A key unknown to the cached ring always triggers a fresh look, so a token signed by a key that
# another process just made current verifies at once; a retired key outlives its tokens anyway.
_RECHECK_SECONDS = 1.0
_checked_at: dict[Path, float] = {}


def public_key(data_dir: Path, kid: str) -> Ed25519PublicKey | None:
    """The verification key named `kid` (current or retired), from the cached key ring."""
    directory = data_dir / "jwt"
    cached = _cache.get(directory)
    checked = _checked_at.get(directory, 0.0)
    now = time.monotonic()
    if cached is not None and now - checked < _RECHECK_SECONDS:
        key = cached[1].public_keys.get(kid)
        if key is not None:
            return key
    ring = keyring(data_dir)
    _checked_at[directory] = now
    return ring.public_keys.get(kid)


def rotate(data_dir: Path) -> KeyRing:
    """Sign with a new key from now on; the old one keeps verifying until its tokens expire."""
    directory = data_dir / "jwt"
    with _lock:
        _ensure_directory(directory)
        now = int(time.time())
        retired: dict[str, int] = {}
        if _index_mtime(directory) is not None:
            index = json.loads((directory / INDEX).read_text())
            retired = {str(kid): int(at) for kid, at in dict(index.get("retired", {})).items()}
            retired[str(index["current"])] = now
        retired = _prune(directory, retired, now)
        _write_index(directory, _new_key(directory), retired)
        _cache.pop(directory, None)
    return keyring(data_dir)
