"""SSH public key parsing, checked against keys and fingerprints from the real `ssh-keygen`."""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from opencodehub.accounts.keys import (
    MAX_KEY_TEXT_LENGTH,
    InvalidKey,
    fingerprint_sha256,
    parse_public_key,
)


def ssh_keygen(directory: Path, key_type: str, bits: int | None = None) -> tuple[str, str]:
    """A fresh key pair from ssh-keygen: (public key line, private key file text)."""
    path = directory / f"id_{key_type}_{bits or 0}"
    command = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "me@laptop", "-f", str(path)]
    if bits:
        command[4:4] = ["-b", str(bits)]
    subprocess.run(command, check=True, capture_output=True)
    return path.with_suffix(".pub").read_text(), path.read_text()


def keygen_fingerprint(directory: Path, public_line: str) -> str:
    path = directory / "check.pub"
    path.write_text(public_line)
    output = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return output.split()[1]


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def sk_ed25519_line() -> str:
    public = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    kind = b"sk-ssh-ed25519@openssh.com"
    blob = _string(kind) + _string(public) + _string(b"ssh:")
    return f"{kind.decode()} {base64.b64encode(blob).decode()} yubikey"


def sk_ecdsa_line() -> str:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    kind = b"sk-ecdsa-sha2-nistp256@openssh.com"
    blob = _string(kind) + _string(b"nistp256") + _string(point) + _string(b"ssh:")
    return f"{kind.decode()} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize(
    ("key_type", "bits", "expected_type", "expected_bits"),
    [
        ("ed25519", None, "ssh-ed25519", 256),
        ("ecdsa", 256, "ecdsa-sha2-nistp256", 256),
        ("ecdsa", 384, "ecdsa-sha2-nistp384", 384),
        ("ecdsa", 521, "ecdsa-sha2-nistp521", 521),
        ("rsa", 2048, "ssh-rsa", 2048),
        ("rsa", 3072, "ssh-rsa", 3072),
    ],
)
def test_accepts_keys_from_ssh_keygen_with_its_fingerprint(
    tmp_path: Path, key_type: str, bits: int | None, expected_type: str, expected_bits: int
) -> None:
    public_line, _ = ssh_keygen(tmp_path, key_type, bits)
    key = parse_public_key(public_line)
    assert key.key_type == expected_type
    assert key.bits == expected_bits
    assert key.comment == "me@laptop"
    assert key.fingerprint == keygen_fingerprint(tmp_path, public_line)
    assert key.openssh == " ".join(public_line.split()[:2])
    assert not key.fingerprint.endswith("=")


@pytest.mark.parametrize("make_line", [sk_ed25519_line, sk_ecdsa_line])
def test_accepts_security_keys(tmp_path: Path, make_line) -> None:
    line = make_line()
    key = parse_public_key(line)
    assert key.key_type == line.split()[0]
    assert key.fingerprint == keygen_fingerprint(tmp_path, line)


def test_surrounding_whitespace_and_missing_comment_are_fine(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "ed25519")
    kind, data = public_line.split()[:2]
    assert parse_public_key(f"\n  {kind}   {data}  \r\n").openssh == f"{kind} {data}"
    assert parse_public_key(f"{kind} {data}").comment == ""


def test_fingerprint_is_unpadded_base64_of_sha256() -> None:
    assert fingerprint_sha256(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


def _rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidKey) as info:
        parse_public_key(text)
    assert fragment in str(info.value)


def test_rejects_dsa_with_a_reason(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "dsa")
    _rejects(public_line, "DSA keys are not accepted")


def test_rejects_short_rsa(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "rsa", 1024)
    _rejects(public_line, "at least 2048 bits; this one is 1024")


def test_rejects_a_private_key_pasted_by_mistake(tmp_path: Path) -> None:
    _, private_text = ssh_keygen(tmp_path, "ed25519")
    _rejects(private_text, "this is a private key")
    _rejects("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "private key")


def test_rejects_pem_and_rfc4716_public_keys() -> None:
    _rejects("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----", "PEM")
    _rejects("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----", "RFC 4716")


def test_rejects_several_keys_in_one_field(tmp_path: Path) -> None:
    first, _ = ssh_keygen(tmp_path, "ed25519")
    second, _ = ssh_keygen(tmp_path, "ecdsa", 256)
    _rejects(first + second, "only one key")
    kind, data = first.split()[:2]
    _rejects(f"{kind} {data} {second.strip()}", "only one key")


def test_rejects_options_prefix(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "ed25519")
    _rejects(f'command="/bin/sh",no-pty {public_line}', "options")
    _rejects(f'from="10.0.0.0/8" {public_line}', "options")


def test_rejects_type_mismatch_between_prefix_and_blob(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "ed25519")
    data = public_line.split()[1]
    _rejects(f"ssh-rsa {data}", "type mismatch")
    p384, _ = ssh_keygen(tmp_path, "ecdsa", 384)
    _rejects(f"ecdsa-sha2-nistp256 {p384.split()[1]}", "type mismatch")


def test_rejects_malformed_base64_and_blobs(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "ed25519")
    kind, data = public_line.split()[:2]
    _rejects(f"{kind} {data[:-3]}", "base64")
    _rejects(f"{kind} {data}!", "base64")
    _rejects(f"{kind} not_base64", "base64")
    blob = base64.b64decode(data)
    _rejects(f"{kind} {base64.b64encode(blob[:-5]).decode()}", "truncated")
    _rejects(f"{kind} {base64.b64encode(blob + b'xx').decode()}", "trailing bytes")
    _rejects(kind, "missing its base64")


def test_rejects_ecdsa_point_off_the_curve(tmp_path: Path) -> None:
    public_line, _ = ssh_keygen(tmp_path, "ecdsa", 256)
    kind, data = public_line.split()[:2]
    blob = bytearray(base64.b64decode(data))
    blob[-1] ^= 0xFF
    _rejects(f"{kind} {base64.b64encode(bytes(blob)).decode()}", "not on the curve")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "not supported"),
        ("ssh-ed448 AAAA", "not supported"),
        ("hello world", "not supported"),
        ("ssh-ed25519 AAAA\x00", "NUL"),
        ("ssh-ed25519 " + "A" * (MAX_KEY_TEXT_LENGTH + 1), "too long"),
        ("'; DROP TABLE ssh_keys; --", "not supported"),
        ("\u0455sh-ed25519 AAAAC3NzaC1lZDI1NTE5", "not supported"),  # Cyrillic dze
    ],
)
def test_rejects_garbage(text: str, fragment: str) -> None:
    _rejects(text, fragment)


def test_rejects_non_string() -> None:
    with pytest.raises(InvalidKey):
        parse_public_key(None)  # type: ignore[arg-type]
