"""Authlib's OAuth 2 client, a real third-party peer, against OpenCodeHub on a real port: the
person signs in and consents with a plain HTTP client as a browser would, Authlib does the rest
(PKCE S256, client_secret_basic, refresh, RFC 7009 revocation)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from opencodehub.accounts.models import User
from tests.accounts.oauthapps.conftest import RegisteredApp
from tests.conftest import LiveServer
from tests.web.forms import log_in

_HIDDEN_RE = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def test_authlib_client_full_flow(
    live_server: LiveServer,
    make_user: Callable[..., User],
    make_app: Callable[..., RegisteredApp],
) -> None:
    make_user("alice")
    app = make_app()
    base = live_server.url
    client = OAuth2Client(
        app.client_id,
        app.client_secret,
        scope="read:user user:email",
        redirect_uri=app.callback,
        code_challenge_method="S256",
    )
    verifier = generate_token(64)
    url, state = client.create_authorization_url(
        f"{base}/login/oauth/authorize", code_verifier=verifier
    )

    with httpx.Client(base_url=base) as browser:
        assert log_in(browser).status_code == 303  # type: ignore[arg-type]
        page = browser.get(url)
        assert page.status_code == 200 and "Read your email addresses" in page.text
        form = {name: html.unescape(value) for name, value in _HIDDEN_RE.findall(page.text)}
        assert form["code_challenge_method"] == "S256" and form["state"] == state
        answer = browser.post(
            "/login/oauth/authorize", data={**form, "authorize": "1"}, follow_redirects=False
        )
    assert answer.status_code == 302
    callback = answer.headers["location"]
    assert callback.startswith(app.callback + "?")

    token = client.fetch_token(
        f"{base}/login/oauth/access_token",
        authorization_response=callback,
        code_verifier=verifier,
    )
    assert token["token_type"] == "bearer"
    assert set(token["scope"].split(",")) == {"read:user", "user:email"}
    me = client.get(f"{base}/api/v3/user")
    assert me.status_code == 200 and me.json()["login"] == "alice"

    old_access = token["access_token"]
    refreshed = client.refresh_token(f"{base}/login/oauth/access_token")
    assert refreshed["access_token"] != old_access
    assert (
        httpx.get(
            f"{base}/api/v3/user", headers={"Authorization": f"Bearer {old_access}"}
        ).status_code
        == 401
    )
    assert client.get(f"{base}/api/v3/user").status_code == 200

    revoked = client.revoke_token(f"{base}/login/oauth/revoke", token=refreshed["access_token"])
    assert revoked.status_code == 200
    assert client.get(f"{base}/api/v3/user").status_code == 401
