"""ID token verification against a local JWKS, with forged tokens (no database, no peer)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from opencodehub.accounts.sso import service as sso
from opencodehub.accounts.sso.models import AuthSource, AuthSourceKind
from opencodehub.accounts.sso.providers import (
    CLOCK_LEEWAY_SECONDS,
    REAUTH_MAX_AGE_SECONDS,
    ProviderError,
    authorization_url,
    check_fresh_sign_in,
    proves_fresh_sign_in,
    scopes_of,
    verify_id_token,
)

ISSUER = "https://id.example.com"
CLIENT_ID = "opencodehub"
NONCE = "n-0S6_WzA2Mj"


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})


@pytest.fixture(scope="module")
def jwks(signing_key: RSAKey) -> dict[str, Any]:
    return KeySet([signing_key]).as_dict(private=False)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "email": "jane@example.com",
        "email_verified": True,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _sign(key: Any, claims: dict[str, Any], alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    return verify_id_token(token, jwks, issuer=ISSUER, client_id=CLIENT_ID, nonce=NONCE)


def test_a_genuine_token_passes(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    claims = _verify(_sign(signing_key, _claims()), jwks)
    assert claims["sub"] == "248289761001"
    assert claims["email_verified"] is True
    # Several audiences are fine when we are the authorized party.
    _verify(_sign(signing_key, _claims(aud=[CLIENT_ID, "other"], azp=CLIENT_ID)), jwks)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": "someone-else"}, "another client"),
        ({"aud": [CLIENT_ID, "other"], "azp": "other"}, "authorized party"),
        ({"iss": "https://evil.example.com"}, "iss"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"nonce": "replayed-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"exp": None}, "exp"),
        ({"sub": None}, "sub"),
    ],
)
def test_wrong_claims_are_refused(
    signing_key: RSAKey, jwks: dict[str, Any], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        _verify(_sign(signing_key, _claims(**overrides)), jwks)
    assert "ID token was refused" in str(caught.value)
    assert message in str(caught.value)


def test_a_token_signed_by_another_key_is_refused(jwks: dict[str, Any]) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(ProviderError, match="ID token was refused"):
        _verify(_sign(impostor, _claims()), jwks)


def test_a_tampered_payload_is_refused(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    header, _, signature = _sign(signing_key, _claims()).split(".")
    payload = _b64(json.dumps(_claims(sub="admin")).encode())
    with pytest.raises(ProviderError, match="ID token was refused"):
        _verify(f"{header}.{payload}.{signature}", jwks)


def test_alg_none_is_refused(jwks: dict[str, Any]) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        with pytest.raises(ProviderError, match="ID token was refused"):
            _verify(token, jwks)


def test_hmac_keyed_with_the_public_key_is_refused(
    signing_key: RSAKey, jwks: dict[str, Any]
) -> None:
    """The classic confusion: HS256 "signed" with the provider's public key as the secret."""
    public_pem = signing_key.as_pem(private=False)
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(ProviderError, match="ID token was refused"):
        _verify(f"{header}.{payload}.{_b64(signature)}", jwks)
    # The same with the JWK's modulus as the secret.
    modulus = jwks["keys"][0]["n"].encode()
    signature = hmac.new(modulus, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(ProviderError, match="ID token was refused"):
        _verify(f"{header}.{payload}.{_b64(signature)}", jwks)


def test_an_ec_signed_token_with_a_published_ec_key_passes() -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    keys = KeySet([key]).as_dict(private=False)
    assert _verify(_sign(key, _claims(), "ES256"), keys)["sub"] == "248289761001"


def test_garbage_is_refused(jwks: dict[str, Any]) -> None:
    for token in ("", "not-a-jwt", "a.b.c", "...."):
        with pytest.raises(ProviderError, match="ID token was refused"):
            _verify(token, jwks)


# Pure pieces of the flow ------------------------------------------------------------------------


def _source(kind: AuthSourceKind, **fields: Any) -> AuthSource:
    defaults: dict[str, Any] = {
        "name": "X",
        "slug": "x",
        "client_id": "cid",
        "scopes": "",
        "discovery_url": "",
        "base_url": "https://ghe.example.com",
        "api_url": "",
        "required_group": "",
        "org_mapping": {},
    }
    return AuthSource(kind=kind, **{**defaults, **fields})


def test_authorization_urls_carry_pkce_and_the_right_scopes() -> None:
    github = _source(AuthSourceKind.GITHUB)
    url = authorization_url(github, "https://och/cb", "st", "v" * 64, "nonce")
    assert url.startswith("https://ghe.example.com/login/oauth/authorize?")
    assert "code_challenge_method=S256" in url and "state=st" in url and "nonce" not in url
    assert scopes_of(github) == "read:user user:email"
    assert scopes_of(_source(AuthSourceKind.GITHUB, required_group="acme")).endswith("read:org")
    gitlab = _source(AuthSourceKind.GITLAB, org_mapping={"g": "o"})
    assert scopes_of(gitlab) == "read_user read_api"
    assert authorization_url(gitlab, "https://och/cb", "st", "v" * 64, "n").startswith(
        "https://ghe.example.com/oauth/authorize?"
    )
    assert scopes_of(_source(AuthSourceKind.OIDC, scopes="email")) == "openid email"


def test_a_reauthentication_asks_oidc_providers_for_a_fresh_sign_in() -> None:
    oidc = _source(AuthSourceKind.OIDC, base_url="")
    oidc.discovery_url = "https://id.example.com/.well-known/openid-configuration"
    github = _source(AuthSourceKind.GITHUB)
    gitlab = _source(AuthSourceKind.GITLAB)
    assert proves_fresh_sign_in(oidc)
    assert not proves_fresh_sign_in(github) and not proves_fresh_sign_in(gitlab)
    gitlab_openid = _source(AuthSourceKind.GITLAB, scopes="read_user openid")
    assert proves_fresh_sign_in(gitlab_openid)
    url = authorization_url(
        gitlab_openid, "https://och/cb", "st", "v" * 64, "n", reauthenticate=True
    )
    assert "prompt=login" in url and "max_age=0" in url and "nonce=n" in url
    for source in (github, gitlab):
        url = authorization_url(source, "https://och/cb", "st", "v" * 64, "n", reauthenticate=True)
        # Neither knows these parameters: nothing is sent that would pretend otherwise.
        assert "prompt=" not in url and "max_age=" not in url


def test_an_oidc_reauthentication_url_carries_prompt_login_and_max_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opencodehub.accounts.sso import providers

    oidc = _source(AuthSourceKind.OIDC)
    monkeypatch.setattr(
        providers,
        "endpoints_for",
        lambda source: providers.Endpoints("https://id.example.com/auth", "https://id/token"),
    )
    plain = authorization_url(oidc, "https://och/cb", "st", "v" * 64, "n")
    assert "prompt=" not in plain and "max_age=" not in plain
    again = authorization_url(oidc, "https://och/cb", "st", "v" * 64, "n", reauthenticate=True)
    assert "prompt=login" in again and "max_age=0" in again


STARTED = 1_800_000_000.0


@pytest.mark.parametrize(
    ("auth_time", "now", "message"),
    [
        (None, STARTED + 5, "did not say when"),
        ("1800000004", STARTED + 5, "did not say when"),
        (True, STARTED + 5, "did not say when"),
        (float("nan"), STARTED + 5, "did not say when"),
        (float("inf"), STARTED + 5, "did not say when"),
        ([STARTED], STARTED + 5, "did not say when"),
        # An earlier sign-in reused by the provider.
        (STARTED - CLOCK_LEEWAY_SECONDS - 1, STARTED + 5, "without signing in again"),
        (STARTED - 86_400, STARTED + 5, "without signing in again"),
        # Fresh when it happened, but the answer came back too late.
        (STARTED + 1, STARTED + REAUTH_MAX_AGE_SECONDS + 2, "without signing in again"),
        # A sign-in in the future is no sign-in.
        (STARTED + 5 + CLOCK_LEEWAY_SECONDS + 1, STARTED + 5, "future"),
    ],
)
def test_a_stale_absent_or_forged_auth_time_is_refused(
    auth_time: object, now: float, message: str
) -> None:
    with pytest.raises(ProviderError, match=message):
        check_fresh_sign_in(auth_time, started_at=STARTED, now=now)


@pytest.mark.parametrize("auth_time", [STARTED + 3, int(STARTED) + 3, STARTED - 10, STARTED + 70])
def test_a_fresh_auth_time_passes(auth_time: float) -> None:
    # Within the clock skew either side of the request's start and of now.
    check_fresh_sign_in(auth_time, started_at=STARTED, now=STARTED + 20)


def test_auth_time_comes_from_the_signed_token_only(
    signing_key: RSAKey, jwks: dict[str, Any]
) -> None:
    """A fresh `auth_time` spliced into a genuine token breaks its signature."""
    token = _sign(signing_key, _claims(auth_time=int(time.time()) - 86_400))
    header, _, signature = token.split(".")
    forged = _b64(json.dumps(_claims(auth_time=int(time.time()))).encode())
    with pytest.raises(ProviderError, match="ID token was refused"):
        _verify(f"{header}.{forged}.{signature}", jwks)
    assert _verify(token, jwks)["auth_time"] < time.time() - 3600


@pytest.mark.parametrize(
    ("login", "email", "expected"),
    [
        ("octocat", "", "octocat"),
        ("octo_cat.dev", "", "octo-cat-dev"),
        ("--weird__name--", "", "weird-name"),
        ("", "jane.doe@example.com", "jane-doe"),
        ("Zoë", "", "Zo"),
        ("admin", "", ""),
        ("___", "", ""),
        ("a" * 60, "", "a" * 39),
    ],
)
def test_provider_logins_become_valid_usernames(login: str, email: str, expected: str) -> None:
    assert sso.propose_username(login, email) == expected


def test_mapping_and_domain_parsing() -> None:
    assert sso.parse_mapping("acme-corp=acme\n eng = engineering ,") == {
        "acme-corp": "acme",
        "eng": "engineering",
    }
    with pytest.raises(sso.ValidationFailed):
        sso.parse_mapping("no-equals-sign")
    assert sso._clean_domains("Example.COM, @corp.example example.com") == (
        "example.com,corp.example"
    )
    with pytest.raises(sso.ValidationFailed):
        sso._clean_domains("not a domain!")


def test_a_gitlab_id_token_is_required_and_must_name_the_api_user(
    signing_key: RSAKey, jwks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from opencodehub.accounts.sso import providers

    base = "https://gitlab.example.com"
    source = _source(AuthSourceKind.GITLAB, scopes="read_user openid", base_url=base)
    monkeypatch.setitem(
        providers._jwks_cache, f"{base}/oauth/discovery/keys", (time.monotonic(), jwks)
    )
    user = {"id": 42, "username": "tanuki", "email": "t@example.com", "confirmed_at": "2024"}
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=user)))

    def answer(**claims: Any) -> dict[str, Any]:
        signed = _sign(signing_key, _claims(**{"iss": base, "aud": "cid", "sub": "42", **claims}))
        return {"access_token": "at", "id_token": signed}

    signed_in_at = int(time.time()) - 5
    profile = providers._gitlab_profile(client, source, answer(auth_time=signed_in_at), NONCE)
    assert profile.subject == "42" and profile.auth_time == signed_in_at
    with pytest.raises(ProviderError, match="different user"):
        providers._gitlab_profile(client, source, answer(sub="43"), NONCE)
    with pytest.raises(ProviderError, match="no ID token"):
        providers._gitlab_profile(client, source, {"access_token": "at"}, NONCE)
    with pytest.raises(ProviderError, match="nonce"):
        providers._gitlab_profile(client, source, answer(), "another-nonce")
    with pytest.raises(ProviderError, match="iss"):
        providers._gitlab_profile(client, source, answer(iss="https://evil.example"), NONCE)
