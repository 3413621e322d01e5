"""Pure pieces of the OAuth provider, without a database."""

from __future__ import annotations

import base64

import pytest

from opencodehub.accounts.oauthapps import service as oauth
from opencodehub.accounts.oauthapps.api import basic_credentials
from opencodehub.accounts.oauthapps.views import redirect_with
from opencodehub.core.errors import ValidationFailed
from tests.accounts.oauthapps.conftest import pkce_pair


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example/cb",
        "http://localhost:8080/cb",
        "http://127.0.0.1/cb?x=1",
        "http://[::1]:9/cb",
    ],
)
def test_callback_urls_accepted(url: str) -> None:
    assert oauth.validate_url(url, "callback_urls", callback=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://app.example/cb",  # http only for loopback
        "https://app.example/cb#frag",
        "javascript:alert(1)",
        "ftp://app.example/",
        "https:///nohost",
        "https://app.example/ cb",
        "https://app.example/\x00",
        "",
    ],
)
def test_callback_urls_refused(url: str) -> None:
    with pytest.raises(ValidationFailed):
        oauth.validate_url(url, "callback_urls", callback=True)


def test_scopes_parsed_like_github() -> None:
    assert oauth.parse_scopes("repo, user read:org") == ["read:org", "repo", "user"]
    assert oauth.parse_scopes("") == []
    with pytest.raises(oauth.OAuthError) as info:
        oauth.parse_scopes("repo admin:everything")
    assert info.value.error == "invalid_scope"


def test_pkce_s256() -> None:
    verifier, challenge = pkce_pair()
    assert oauth._verify_pkce(challenge, verifier)
    assert not oauth._verify_pkce(challenge, pkce_pair()[0])
    assert not oauth._verify_pkce(challenge, "")
    assert not oauth._verify_pkce(challenge, "short")
    # RFC 7636 appendix B.
    assert oauth._verify_pkce(
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    )


def test_redirect_keeps_the_registered_query() -> None:
    response = redirect_with("https://app.example/cb?tenant=a", {"code": "c d", "state": "s&t"})
    assert response.headers["location"] == "https://app.example/cb?tenant=a&code=c+d&state=s%26t"


def test_basic_credentials_are_form_decoded() -> None:
    header = "Basic " + base64.b64encode(b"client%3Aid:se+cret").decode()
    assert basic_credentials(header) == ("client:id", "se cret")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Bearer x") is None


def test_token_shapes() -> None:
    assert oauth.actor_for_oauth_token(None, "och_" + "a" * 40) is None  # type: ignore[arg-type]
    assert not oauth._shaped("ocho_" + "a" * 39, oauth.ACCESS_PREFIX)
    assert not oauth._shaped("ocho_" + "a" * 39 + "é", oauth.ACCESS_PREFIX)
    assert oauth._shaped(oauth._new_secret(oauth.REFRESH_PREFIX), oauth.REFRESH_PREFIX)


def test_scopes_header_lists_what_was_granted() -> None:
    from opencodehub.accounts.actor import Actor, expand_scopes

    actor = Actor(user=None, method="oauth", scopes=expand_scopes(["user", "read:org"]))
    assert oauth.scopes_header(actor) == "read:org, user"
    assert oauth.scopes_header(Actor(user=None, method="token", scopes=frozenset())) == ""


def test_consent_page_may_send_its_form_on_to_the_callback() -> None:
    from opencodehub.accounts.oauthapps.views import consent_csp

    assert "form-action 'self' http://127.0.0.1:8765;" in consent_csp("http://127.0.0.1:8765/cb")
    assert "form-action 'self' https://[::1];" in consent_csp("https://[::1]/cb?x=1")
    assert "form-action 'self';" in consent_csp("https://a.example;script-src/cb")
