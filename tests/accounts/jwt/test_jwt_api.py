"""JWT access tokens: exchange, use, binding to the issuing credential, and forged tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.jwt import keys
from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.accounts.models import AccessToken, User
from opencodehub.config import Settings
from tests.conftest import auth_header
from tests.web.forms import log_in, post_form

EXCHANGE = "/api/v3/user/tokens/jwt"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


def _exchange(client: TestClient, pat: str, **body: Any) -> dict[str, Any]:
    response = client.post(EXCHANGE, headers=auth_header(pat), json=body or None)
    assert response.status_code == 201, response.text
    return response.json()


def test_exchange_a_pat_and_use_the_jwt(
    client: TestClient, alice: User, make_token: Callable[..., str], settings: Settings
) -> None:
    pat = make_token(alice, ["repo", "user"])
    issued = _exchange(client, pat)
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 3600
    assert issued["scopes"] == ["repo", "user"]
    header = jwt.get_unverified_header(issued["token"])
    assert header["alg"] == "EdDSA" and header["kid"] == keys.keyring(settings.data_dir).current_kid
    claims = jwt.decode(issued["token"], options={"verify_signature": False})
    assert claims["sub"] == str(alice.id) and claims["username"] == "alice"
    assert claims["iss"] == settings.effective_base_url
    assert claims["aud"] == f"{settings.effective_base_url}/api/v3"
    assert claims["exp"] - claims["iat"] == 3600 and claims["jti"] == issued["jti"]

    me = client.get("/api/v3/user", headers=_bearer(issued["token"]))
    assert me.status_code == 200 and me.json()["login"] == "alice"
    assert client.get("/api/v3/user", headers=auth_header(issued["token"])).status_code == 200

    # The published keys verify it.
    jwks = client.get("/.well-known/jwks.json").json()
    key = jwt.PyJWK(jwks["keys"][0])
    assert jwt.decode(issued["token"], key, algorithms=["EdDSA"], audience=claims["aud"])[
        "sub"
    ] == str(alice.id)


def test_scopes_and_lifetime_are_capped(
    client: TestClient, alice: User, make_token: Callable[..., str]
) -> None:
    pat = make_token(alice, ["repo"])
    narrowed = _exchange(client, pat, scopes=["public_repo"], expires_in=600)
    assert narrowed["scopes"] == ["public_repo"] and narrowed["expires_in"] == 600
    assert _exchange(client, pat, expires_in=10**7)["expires_in"] == 3600
    for body, field in (
        ({"scopes": ["admin:org"]}, "lacks the scope(s): admin:org"),
        ({"scopes": ["user"]}, "lacks"),
        ({"scopes": ["nonsense"]}, "unknown scope"),
        ({"expires_in": 5}, "at least 60 seconds"),
    ):
        response = client.post(EXCHANGE, headers=auth_header(pat), json=body)
        assert response.status_code == 422
        assert field in json.dumps(response.json())
    assert (
        client.post(EXCHANGE, headers=auth_header(pat), json={"expires_in": -1}).status_code == 422
    )
    assert client.post(EXCHANGE).status_code == 401
    # A JWT cannot mint another JWT.
    jwt_token = _exchange(client, pat)["token"]
    assert client.post(EXCHANGE, headers=_bearer(jwt_token)).status_code == 403


def test_jwt_ends_with_its_credential(
    client: TestClient, alice: User, make_token: Callable[..., str]
) -> None:
    pat = make_token(alice, ["repo"])
    token = _exchange(client, pat)["token"]
    assert client.get("/api/v3/user", headers=_bearer(token)).status_code == 200
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        owner = session.get(User, alice.id)
        token_id = session.scalar(select(AccessToken.id))
        assert owner is not None and token_id is not None
        accounts.revoke_token(session, owner, token_id)
    assert client.get("/api/v3/user", headers=_bearer(token)).status_code == 401

    # From a browser session: signing out everywhere ends it.
    assert log_in(client, "alice").status_code == 303
    from_session = client.post(EXCHANGE, json={"scopes": ["read:user"]})
    assert from_session.status_code == 201
    session_jwt = from_session.json()["token"]
    claims = jwt.decode(session_jwt, options={"verify_signature": False})
    assert "sid" in claims and "tid" not in claims
    fresh = TestClient(client.app)
    assert fresh.get("/api/v3/user", headers=_bearer(session_jwt)).status_code == 200
    post_form(client, "/settings/security", "/settings/security/sign-out-everywhere")
    assert fresh.get("/api/v3/user", headers=_bearer(session_jwt)).status_code == 401


def _claims(settings: Settings, user: User, token_id: int, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": settings.effective_base_url,
        "aud": f"{settings.effective_base_url}/api/v3",
        "sub": str(user.id),
        "username": user.username,
        "scope": "repo",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "test",
        "tid": token_id,
        **extra,
    }


def test_forged_and_invalid_jwts_are_refused(
    client: TestClient, alice: User, make_token: Callable[..., str], settings: Settings
) -> None:
    pat = make_token(alice, ["repo"])
    good = _exchange(client, pat)["token"]
    token_id = jwt.decode(good, options={"verify_signature": False})["tid"]
    ring = keys.keyring(settings.data_dir)
    kid = ring.current_kid

    def sign(
        claims: dict[str, Any], *, key: Any = None, headers: dict[str, Any] | None = None
    ) -> str:
        return jwt.encode(
            claims,
            key or ring.private_key,
            algorithm="EdDSA",
            headers={"kid": kid, **(headers or {})},
        )

    # Sanity: a token built the same way with the real key is accepted.
    assert (
        client.get(
            "/api/v3/user", headers=_bearer(sign(_claims(settings, alice, token_id)))
        ).status_code
        == 200
    )

    header_b64 = _b64(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
    body_b64 = _b64(json.dumps(_claims(settings, alice, token_id)).encode())
    alg_none = f"{header_b64}.{body_b64}."
    public_pem = ring.public_keys[kid].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    hs_signature = _b64(
        hmac.new(public_pem, f"{hs_header}.{body_b64}".encode(), hashlib.sha256).digest()
    )
    hs256_with_public_key = f"{hs_header}.{body_b64}.{hs_signature}"
    now = int(time.time())
    rejected = {
        "alg none": alg_none,
        "HS256 keyed with the public key": hs256_with_public_key,
        "unknown kid": sign(_claims(settings, alice, token_id), headers={"kid": "nope"}),
        "other key, same kid": sign(
            _claims(settings, alice, token_id), key=Ed25519PrivateKey.generate()
        ),
        "expired": sign(
            _claims(settings, alice, token_id, iat=now - 900, nbf=now - 900, exp=now - 300)
        ),
        "not yet valid": sign(_claims(settings, alice, token_id, nbf=now + 600, exp=now + 900)),
        "issued in the future": sign(
            _claims(settings, alice, token_id, iat=now + 600, exp=now + 900)
        ),
        "lives too long": sign(_claims(settings, alice, token_id, exp=now + 86400)),
        "wrong issuer": sign(_claims(settings, alice, token_id, iss="https://evil.example")),
        "wrong audience": sign(_claims(settings, alice, token_id, aud="https://evil.example")),
        "scope the issuing token lacks": sign(
            _claims(settings, alice, token_id, scope="repo admin:org")
        ),
        "unknown scope": sign(_claims(settings, alice, token_id, scope="repo root")),
        "other user's token id": sign(_claims(settings, alice, token_id, sub="999999")),
        "no binding": sign(
            {k: v for k, v in _claims(settings, alice, token_id).items() if k != "tid"}
        ),
        "no exp": sign({k: v for k, v in _claims(settings, alice, token_id).items() if k != "exp"}),
        "tampered payload": good.split(".")[0]
        + "."
        + _b64(json.dumps(_claims(settings, alice, token_id, scope="repo")).encode())
        + "."
        + good.split(".")[2],
        "garbage": "eyJhbGciOiJFZERTQSJ9.!!!.abc",
    }
    for name, token in rejected.items():
        response = client.get("/api/v3/user", headers=_bearer(token))
        assert response.status_code == 401, name
        assert response.json()["message"] == "Bad credentials", name


def test_rotation_keeps_old_tokens_valid(
    client: TestClient, alice: User, make_token: Callable[..., str], settings: Settings
) -> None:
    pat = make_token(alice, ["repo"])
    old = _exchange(client, pat)["token"]
    keys.rotate(settings.data_dir)
    new = _exchange(client, pat)["token"]
    assert jwt.get_unverified_header(old)["kid"] != jwt.get_unverified_header(new)["kid"]
    for token in (old, new):
        assert client.get("/api/v3/user", headers=_bearer(token)).status_code == 200
    kids = {item["kid"] for item in client.get("/.well-known/jwks.json").json()["keys"]}
    assert kids == {jwt.get_unverified_header(old)["kid"], jwt.get_unverified_header(new)["kid"]}
    with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        actor = jwt_service.actor_for_jwt(session, old, settings)
        assert actor is not None and actor.method == "jwt" and actor.user is not None
        assert actor.scopes is not None and "repo" in actor.scopes
        assert jwt_service.actor_for_jwt(session, "och_" + "x" * 40) is None
