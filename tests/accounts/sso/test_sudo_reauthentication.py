"""Sudo mode through a provider must be a real re-authentication.

OpenID Connect is played by panva's certified `oidc-provider`: the sudo request asks for
`prompt=login` and `max_age=0`, the provider shows its login form even to a browser signed in
there, and the ID token's `auth_time` must be fresh. A provider that ignores the request (played
here by dropping the parameters on the way) answers with no or an old `auth_time`: refused.
GitLab (the local stand-in) does the same when its source asks for `openid`. GitHub (the local
stand-in) cannot be asked for a fresh sign-in, so it only serves accounts that have no other
proof to give.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import update

from opencodehub.accounts.models import User
from opencodehub.accounts.sso.models import AuthSource, SSOAuthRequest
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.accounts.sso.conftest import (
    SUDO_PAGE,
    Browser,
    OAuthPeer,
    audit_events,
    expire_sudo,
    link_from_settings,
    start_sudo,
    sudo_active,
    verified_github_user,
)
from tests.peers.gitlab import gitlab_user
from tests.peers.oidc import sign_in_at_provider
from tests.web.forms import log_in, log_out, post_form


def _provider_page(peer: httpx.Client, url: str) -> httpx.Response:
    """Follow the provider's own redirects from `url`; the first page it shows, or its redirect
    back to OpenCodeHub (a 302/303 whose location leaves the provider)."""
    response = peer.get(url, follow_redirects=False)
    for _ in range(10):
        if response.status_code not in (302, 303):
            return response
        target = response.url.join(response.headers["location"])
        if (target.host, target.port) != (response.url.host, response.url.port):
            return response
        response = peer.get(target, follow_redirects=False)
    raise AssertionError("the provider kept redirecting")


def _with_params(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (a value) or removed (None)."""
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def _deliver(browser: Browser, callback: str) -> httpx.Response:
    """Hand the provider's redirect back to OpenCodeHub, following what comes after."""
    return browser.get(callback)


def test_oidc_sudo_shows_the_providers_login_form_despite_its_session(
    client: TestClient, db: Database, oidc_sign_up: Browser
) -> None:
    oidc_browser = oidc_sign_up
    sudo_page = client.get(SUDO_PAGE)
    assert "Re-authenticate with Company SSO" in sudo_page.text

    start = start_sudo(client, "oidc")
    assert start.status_code == 303
    authorize = start.headers["location"]
    params = parse_qs(urlsplit(authorize).query)
    assert params["prompt"] == ["login"] and params["max_age"] == ["0"]

    # The browser is still signed in at the provider: an ordinary request would come straight
    # back (see the next test); this one stops at the login form.
    shown = _provider_page(oidc_browser.peer, authorize)
    assert shown.status_code == 200
    assert 'name="login"' in shown.text
    assert not sudo_active(db)

    callback = sign_in_at_provider(oidc_browser.peer, authorize, "alice")
    back = _deliver(oidc_browser, callback)
    assert back.status_code == 200, back.text
    assert str(back.request.url).endswith("/settings/password")
    assert sudo_active(db)
    assert [e.details for e in audit_events(db, "sudo.granted")] == [{"method": "oidc:oidc"}]


def test_a_provider_that_skips_the_login_is_refused(
    client: TestClient, db: Database, oidc_sign_up: Browser
) -> None:
    oidc_browser = oidc_sign_up

    # Without `prompt` and `max_age` the provider reuses its session silently and puts no
    # `auth_time` in the ID token: OpenCodeHub cannot tell the sign-in is fresh.
    start = start_sudo(client, "oidc")
    silent = _provider_page(
        oidc_browser.peer, _with_params(start.headers["location"], prompt=None, max_age=None)
    )
    assert silent.status_code in (302, 303), "the provider showed a form"
    refused = _deliver(oidc_browser, str(silent.url.join(silent.headers["location"])))
    assert refused.status_code == 403
    assert "did not say when you signed in" in refused.text
    assert not sudo_active(db)

    # With a lax `max_age` it names the time of its old sign-in, which came before this sudo
    # request began (the request is dated ten minutes later here, as if the provider session
    # were that much older): refused too.
    start = start_sudo(client, "oidc")
    with db.session() as session:
        session.execute(update(SSOAuthRequest).values(created_at=utcnow() + timedelta(minutes=10)))
    silent = _provider_page(
        oidc_browser.peer, _with_params(start.headers["location"], prompt=None, max_age="3600")
    )
    assert silent.status_code in (302, 303), "the provider showed a form"
    stale = _deliver(oidc_browser, str(silent.url.join(silent.headers["location"])))
    assert stale.status_code == 403
    assert "without signing in again" in stale.text
    assert not sudo_active(db)
    assert audit_events(db, "sudo.granted") == []
    reasons = [event.details["reason"] for event in audit_events(db, "sso.sign_in_failed")]
    assert len(reasons) == 2
    # Still signed in as before; only sudo mode was refused.
    assert client.get("/api/v3/user").json()["login"] == "alice"


def test_oidc_is_offered_to_an_account_with_a_password_and_github_is_not(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    oidc_source: Callable[..., AuthSource],
    github_source: Callable[..., AuthSource],
    github_peer: OAuthPeer,
    oidc_browser: Browser,
) -> None:
    make_user("carol")
    oidc_source()
    github_source()
    github_peer.reset({"carol-gh": verified_github_user(21, "carol-gh", "c@ex.org")}, "carol-gh")
    assert log_in(client, "carol").status_code == 303
    for slug, account in (("oidc", "alice"), ("github", "")):
        oidc_browser.oidc_account = account
        link_from_settings(client, oidc_browser, slug)
    expire_sudo(db)

    sudo_page = client.get(SUDO_PAGE)
    assert "Re-authenticate with Company SSO" in sudo_page.text
    # GitHub would let anyone at this browser through on its own session: carol has a password
    # to give instead.
    assert "Re-authenticate with GitHub" not in sudo_page.text
    refused = start_sudo(client, "github")
    assert refused.status_code == 403
    assert "cannot confirm that you signed in again" in refused.text
    assert not sudo_active(db)

    start = start_sudo(client, "oidc")
    assert parse_qs(urlsplit(start.headers["location"]).query)["prompt"] == ["login"]
    back = _deliver(
        oidc_browser, sign_in_at_provider(oidc_browser.peer, start.headers["location"], "alice")
    )
    assert back.status_code == 200
    assert sudo_active(db)


def test_github_sudo_stops_counting_once_the_account_has_a_password(
    client: TestClient, db: Database, github_sign_up: Callable[..., Browser]
) -> None:
    browser = github_sign_up()
    assert "Re-authenticate with GitHub" in client.get(SUDO_PAGE).text
    start = start_sudo(client, "github")
    assert start.status_code == 303
    callback = browser.callback_url(start.headers["location"])
    # The account gains a password while the browser is at GitHub (another tab): GitHub's
    # answer no longer counts.
    with db.session() as session:
        session.execute(update(User).values(password_hash="$argon2id$v=19$m=65536,t=3,p=4$x$y"))
    refused = _deliver(browser, callback)
    assert refused.status_code == 403
    assert not sudo_active(db)


def test_provider_sudo_next_never_leaves_the_site(
    client: TestClient, db: Database, github_sign_up: Callable[..., Browser]
) -> None:
    browser = github_sign_up()
    for target in ("//evil.com", "/\\evil.com", "https:evil.com", "%2F%2Fevil.com", "javascript:x"):
        expire_sudo(db)
        start = post_form(client, SUDO_PAGE, "/sudo/sso/github", {"next": target})
        assert start.status_code == 303
        callback = urlsplit(browser.callback_url(start.headers["location"]))
        back = client.get(f"{callback.path}?{callback.query}", follow_redirects=False)
        assert back.status_code == 303
        assert back.headers["location"] == "/", target
        assert sudo_active(db)


def test_gitlab_with_openid_must_sign_in_again_and_prove_it(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    gitlab_source: Callable[..., AuthSource],
    gitlab_peer: OAuthPeer,
    browser: Browser,
) -> None:
    """GitLab is an OpenID provider too: with `openid` among the source's scopes it sends an
    ID token whose `auth_time` is checked like any other provider's."""
    make_user("carol")
    gitlab_source(scopes="read_user openid")
    gitlab_peer.reset({"tanuki": gitlab_user(31, "tanuki", email="t@ex.org")}, "tanuki")
    assert log_in(client, "carol").status_code == 303
    link_from_settings(client, browser, "gitlab")
    assert gitlab_peer.state.forced_logins == 0  # an ordinary request signs in silently
    expire_sudo(db)

    # carol has a password, and GitLab can still be offered: it can prove a fresh sign-in.
    assert "Re-authenticate with GitLab" in client.get(SUDO_PAGE).text
    start = start_sudo(client, "gitlab")
    params = parse_qs(urlsplit(start.headers["location"]).query)
    assert params["prompt"] == ["login"] and params["max_age"] == ["0"]
    assert "openid" in params["scope"][0].split() and params["nonce"][0]
    back = _deliver(browser, start.headers["location"])
    assert back.status_code == 200, back.text
    assert gitlab_peer.state.forced_logins == 1
    assert sudo_active(db)
    assert [e.details for e in audit_events(db, "sudo.granted")] == [{"method": "gitlab:gitlab"}]

    # A GitLab that ignores the request and vouches for its hour-old session: refused.
    expire_sudo(db)
    gitlab_peer.state.honour_prompt = False
    gitlab_peer.state.signed_in_at = time.time() - 3600
    start = start_sudo(client, "gitlab")
    stale = _deliver(browser, start.headers["location"])
    assert stale.status_code == 403
    assert "without signing in again" in stale.text
    assert not sudo_active(db)
    assert len(audit_events(db, "sudo.granted")) == 1


def test_a_provider_sign_in_does_not_start_in_sudo_mode(
    client: TestClient,
    db: Database,
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> None:
    """Otherwise signing out and in again through the provider's silent session would be the
    way around its login form."""
    oidc_source()
    oidc_browser.sign_in_with("oidc", "alice")  # the sign-up
    assert client.get("/api/v3/user").json()["login"] == "alice"
    assert not sudo_active(db)
    log_out(client)
    start = client.get("/login/sso/oidc", follow_redirects=False)
    silent = _provider_page(oidc_browser.peer, start.headers["location"])
    assert silent.status_code in (302, 303), "the provider asked alice to sign in again"
    assert _deliver(oidc_browser, str(silent.url.join(silent.headers["location"]))).is_success
    assert client.get("/api/v3/user").json()["login"] == "alice"
    assert not sudo_active(db)
    blocked = client.get("/settings/security/totp", follow_redirects=False)
    assert blocked.status_code == 303 and "sudo" in blocked.headers["location"]
