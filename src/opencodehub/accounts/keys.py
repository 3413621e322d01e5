"""OpenSSH public keys: parse one `type base64 [comment]` line, check it, fingerprint it.

The wire blob is decoded and walked field by field, so a key whose prefix names one algorithm
but whose blob carries another, a truncated blob, or one with trailing bytes is refused here
rather than at the SSH server's first handshake. The fingerprint is the one `ssh-keygen -lf`
prints: `SHA256:` and the unpadded base64 of the blob's SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

# Longest accepted input: an RSA-16384 key with a long comment stays well below this.
MAX_KEY_TEXT_LENGTH = 8192
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA_P256 = "sk-ecdsa-sha2-nistp256@openssh.com"

# Key type -> (curve name inside the blob, uncompressed point length, cryptography's curve
# class name; `cryptography` loads when a key is first checked, not with the app).
_ECDSA_CURVES: dict[str, tuple[str, int, str]] = {
    "ecdsa-sha2-nistp256": ("nistp256", 65, "SECP256R1"),
    "ecdsa-sha2-nistp384": ("nistp384", 97, "SECP384R1"),
    "ecdsa-sha2-nistp521": ("nistp521", 133, "SECP521R1"),
}
_CURVE_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}

SUPPORTED_TYPES = frozenset({ED25519, RSA, SK_ED25519, SK_ECDSA_P256, *_ECDSA_CURVES})
_REFUSED_TYPES = {
    "ssh-dss": "DSA keys are not accepted: they are insecure and OpenSSH no longer supports them",
}
# Every token that names a key algorithm, including certificates, to recognise a second key
# or an options prefix in front of one.
_ANY_KEY_TYPE_RE = re.compile(
    r"(?:ssh-(?:ed25519|rsa|dss|ed448)|ecdsa-sha2-nistp(?:256|384|521)|"
    r"sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(?:-cert-v01@openssh\.com)?"
)
_BASE64_RE = re.compile(r"\A[A-Za-z0-9+/]+={0,2}\Z")
_FORMAT_HINT = "You must supply a key in OpenSSH public key format, like 'ssh-ed25519 AAAA...'"


class InvalidKey(ValueError):
    """The text is not an acceptable OpenSSH public key; the message says why, for a person."""


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes
    comment: str
    bits: int

    @property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.blob)

    @property
    def openssh(self) -> str:
        """`type base64`, the canonical stored form (without the comment)."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"


def fingerprint_sha256(blob: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def parse_public_key(text: str) -> PublicKey:
    """Parse one OpenSSH public key line; raise InvalidKey with a clear reason otherwise."""
    if not isinstance(text, str):
        raise InvalidKey(f"key is invalid. {_FORMAT_HINT}")
    if len(text) > MAX_KEY_TEXT_LENGTH:
        raise InvalidKey(f"key is too long (at most {MAX_KEY_TEXT_LENGTH} characters)")
    if "\x00" in text:
        raise InvalidKey("key must not contain NUL characters")
    stripped = text.strip()
    if not stripped:
        raise InvalidKey(f"key is empty. {_FORMAT_HINT}")
    if "PRIVATE KEY" in stripped:
        raise InvalidKey(
            "this is a private key: never share it. Paste the public key instead "
            "(the contents of the .pub file, e.g. ~/.ssh/id_ed25519.pub)"
        )
    if stripped.startswith(("-----BEGIN", "---- BEGIN")):
        raise InvalidKey(
            "PEM and RFC 4716 keys are not accepted. Convert it with "
            "'ssh-keygen -i -f key.pub' and paste the one-line result"
        )
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1:
        raise InvalidKey("only one key may be added at a time: paste a single line")
    fields = lines[0].split(None, 2)
    key_type = fields[0]
    if key_type not in SUPPORTED_TYPES:
        if key_type in _REFUSED_TYPES:
            raise InvalidKey(_REFUSED_TYPES[key_type])
        if _ANY_KEY_TYPE_RE.search(lines[0]) and not _ANY_KEY_TYPE_RE.fullmatch(key_type):
            raise InvalidKey(
                'key options (such as command="..." or from="...") are not accepted: '
                "paste the key alone, starting with its type"
            )
        raise InvalidKey(f"key type {key_type[:40]!r} is not supported. {_FORMAT_HINT}")
    if len(fields) < 2:
        raise InvalidKey(f"key is missing its base64 data. {_FORMAT_HINT}")
    encoded = fields[1]
    comment = fields[2].strip() if len(fields) > 2 else ""
    if _ANY_KEY_TYPE_RE.search(comment) and re.search(r"AAAA[A-Za-z0-9+/]{16,}", comment):
        raise InvalidKey("only one key may be added at a time: paste a single key")
    if not _BASE64_RE.match(encoded) or len(encoded) % 4:
        raise InvalidKey("key data is not valid base64")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise InvalidKey("key data is not valid base64") from exc
    bits = _check_blob(key_type, blob)
    return PublicKey(key_type=key_type, blob=blob, comment=comment, bits=bits)


class _Reader:
    """SSH wire-format reader (RFC 4251 §5): uint32-length-prefixed strings and mpints."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def string(self) -> bytes:
        if self._pos + 4 > len(self._data):
            raise InvalidKey("key data is truncated")
        (length,) = struct.unpack_from(">I", self._data, self._pos)
        start = self._pos + 4
        end = start + length
        if end > len(self._data):
            raise InvalidKey("key data is truncated")
        self._pos = end
        return self._data[start:end]

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise InvalidKey("key data is malformed (negative integer)")
        return int.from_bytes(raw, "big")

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise InvalidKey("key data has trailing bytes")


def _check_blob(key_type: str, blob: bytes) -> int:
    """Walk the blob for `key_type`; return the key's size in bits."""
    reader = _Reader(blob)
    try:
        inner_type = reader.string().decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidKey("key data is malformed") from exc
    if inner_type != key_type:
        raise InvalidKey(
            f"key type mismatch: the line says {key_type!r} but the data is {inner_type[:40]!r}"
        )
    if key_type in (ED25519, SK_ED25519):
        if len(reader.string()) != 32:
            raise InvalidKey("key data is malformed (an Ed25519 key is 32 bytes)")
        if key_type == SK_ED25519:
            _check_application(reader.string())
        reader.finish()
        return 256
    if key_type == RSA:
        exponent = reader.mpint()
        modulus = reader.mpint()
        reader.finish()
        bits = modulus.bit_length()
        if exponent < 3 or exponent % 2 == 0 or modulus % 2 == 0:
            raise InvalidKey("key data is malformed (not a valid RSA key)")
        if bits < MIN_RSA_BITS:
            raise InvalidKey(f"RSA keys must be at least {MIN_RSA_BITS} bits; this one is {bits}")
        if bits > MAX_RSA_BITS:
            raise InvalidKey(f"RSA keys must be at most {MAX_RSA_BITS} bits")
        return bits
    curve_key_type = "ecdsa-sha2-nistp256" if key_type == SK_ECDSA_P256 else key_type
    curve_name, point_length, curve_class = _ECDSA_CURVES[curve_key_type]
    if reader.string() != curve_name.encode():
        raise InvalidKey("key type mismatch: the curve inside the key differs from its type")
    point = reader.string()
    if len(point) != point_length:
        raise InvalidKey("key data is malformed (wrong curve point length)")
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(getattr(ec, curve_class)(), point)
    except ValueError as exc:
        raise InvalidKey("key data is malformed (the point is not on the curve)") from exc
    if key_type == SK_ECDSA_P256:
        _check_application(reader.string())
    reader.finish()
    return _CURVE_BITS[curve_name]


def _check_application(application: bytes) -> None:
    """Security keys carry the FIDO application string; OpenSSH writes `ssh:` by default."""
    if not application or len(application) > 255:
        raise InvalidKey("key data is malformed (missing security key application)")
    try:
        application.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidKey("key data is malformed (security key application)") from exc
