"""`jwt.service.verify` checks signatures and claims itself (for speed); here it is held to
PyJWT's verdicts on good tokens and on every kind of forged, altered or stale one, without a
database."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from opencodehub.accounts.actor import KNOWN_SCOPES, Actor, expand_scopes
from opencodehub.accounts.jwt import keys
from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.config import Settings


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir: Path = tmp_path_factory.mktemp("jwt-verify")
    return Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'unused.db'}",
        secret_key="jwt-verify-secret-0123456789abcdef",
        base_url="http://och.test",
        ssh_enabled=False,
        _env_file=None,
    )


def _issued(config: Settings) -> str:
    actor = Actor(
        user=SimpleNamespace(id=7, username="ada"),  # type: ignore[arg-type]
        method="token",
        scopes=expand_scopes(["repo", "user"]),
        token_id=3,
    )
    return jwt_service.issue(config, actor).token


def _pyjwt_verdict(config: Settings, token: str) -> dict[str, Any] | None:
    """What the PyJWT-based check (pinned EdDSA, kid from the ring, required claims, leeway,
    audience and issuer, then the lifetime and scope rules) decides."""
    if not jwt_service.looks_like_jwt(token):
        return None
    try:
        header = jwt.get_unverified_header(token)
        key = keys.keyring(config.data_dir).public_keys.get(header.get("kid"))
        if header.get("alg") != "EdDSA" or key is None:
            return None
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=jwt_service.audience(config),
            issuer=jwt_service.issuer(config),
            leeway=jwt_service.LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]},
        )
    except (jwt.PyJWTError, TypeError):
        return None
    if claims["iat"] > time.time() + 30 or claims["exp"] - claims["iat"] > 3600:
        return None
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or any(item not in KNOWN_SCOPES for item in scope.split()):
        return None
    return claims


def _sign(config: Settings, claims: dict[str, Any], **header: Any) -> str:
    ring = keys.keyring(config.data_dir)
    headers = {"kid": ring.current_kid, "typ": "at+jwt", **header}
    return jwt.encode(claims, ring.private_key, algorithm="EdDSA", headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_verify_agrees_with_pyjwt_on_good_and_bad_tokens(config: Settings) -> None:
    good = _issued(config)
    claims = jwt_service.verify(config, good)
    assert claims is not None and claims == _pyjwt_verdict(config, good)
    assert claims["sub"] == "7" and claims["tid"] == 3

    now = int(time.time())
    base = dict(claims)
    header_b64, payload_b64, signature_b64 = good.split(".")
    ring = keys.keyring(config.data_dir)
    public_pem = (
        ring.public_keys[ring.current_kid]
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    stranger = Ed25519PrivateKey.generate()
    bad = {
        "expired": _sign(config, {**base, "iat": now - 4000, "nbf": now - 4000, "exp": now - 400}),
        "not yet valid": _sign(config, {**base, "nbf": now + 600}),
        "issued in the future": _sign(config, {**base, "iat": now + 600, "exp": now + 900}),
        "lives too long": _sign(config, {**base, "exp": now + 7200}),
        "another audience": _sign(config, {**base, "aud": "http://elsewhere/api/v3"}),
        "another issuer": _sign(config, {**base, "iss": "http://elsewhere"}),
        "no jti": _sign(config, {k: v for k, v in base.items() if k != "jti"}),
        "no exp": _sign(config, {k: v for k, v in base.items() if k != "exp"}),
        "unknown scope": _sign(config, {**base, "scope": "repo root"}),
        "unknown kid": _sign(config, base, kid="not-a-key"),
        "foreign key": jwt.encode(
            base, stranger, algorithm="EdDSA", headers={"kid": ring.current_kid, "typ": "at+jwt"}
        ),
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'kid': ring.current_kid}).encode())}"
        f".{payload_b64}.",
        "HS256 with the public key": _hs256(public_pem, base, ring.current_kid),
        "tampered payload": f"{header_b64}.{_b64(json.dumps({**base, 'sub': '1'}).encode())}"
        f".{signature_b64}",
        # Always a different first byte (a fixed suffix would match the real one now and then).
        "tampered signature": f"{header_b64}.{payload_b64}."
        + ("B" if signature_b64[0] == "A" else "A")
        + signature_b64[1:],
        "no signature": f"{header_b64}.{payload_b64}.",
        "non-canonical signature": f"{header_b64}.{payload_b64}.{signature_b64[:-1]}"
        + chr(ord(signature_b64[-1]) + 1),
        "not a JWT": "och_" + "a" * 40,
    }
    for name, token in bad.items():
        assert jwt_service.verify(config, token) is None, name
        assert _pyjwt_verdict(config, token) is None, name


def _hs256(public_pem: str, claims: dict[str, Any], kid: str) -> str:
    """The classic key-confusion forgery: HS256 keyed with the published public key."""
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).encode())
    payload = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


def test_verify_is_stricter_only_where_issue_never_differs(config: Settings) -> None:
    """Headers and claim types that `issue` never produces are refused, though PyJWT would
    accept them."""
    base = jwt_service.verify(config, _issued(config))
    assert base is not None
    now = int(time.time())
    for token in (
        _sign(config, base, typ="logout+jwt"),
        _sign(config, base, extra="x"),
        _sign(config, {**base, "aud": [jwt_service.audience(config)]}),
        _sign(config, {**base, "iat": float(now)}),
    ):
        assert jwt_service.verify(config, token) is None


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw-_09azZ."))
def test_any_altered_character_is_refused(
    config: Settings, position: int, replacement: str
) -> None:
    token = _issued(config)
    index = position % len(token)
    altered = token[:index] + replacement + token[index + 1 :]
    verdict = jwt_service.verify(config, altered)
    assert verdict == _pyjwt_verdict(config, altered)
    if altered != token:
        assert verdict is None
