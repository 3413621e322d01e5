"""Protocol checks of the sign-in flow: `state`, code replay, issuer mix-up, `next=`, provider
errors, disabled sources and sign-up. They exercise the flow, not the database, so they run on
SQLite only; the flows that create and link accounts run on every engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts.models import User
from opencodehub.accounts.security.models import AuditEvent
from opencodehub.accounts.sso.models import AuthSource, ExternalIdentity
from opencodehub.db.engine import Database
from tests.accounts.sso.conftest import Browser, OAuthPeer
from tests.conftest import database_with_tables
from tests.peers.github import github_user
from tests.peers.oidc import OIDCProvider
from tests.web.forms import log_in, log_out, post_form


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module runs on SQLite only (overrides the engine-parametrized fixture)."""
    yield f"sqlite:///{tmp_path_factory.mktemp('sso-protocol') / 'och.db'}"


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    with database_with_tables(database_url) as db:
        yield db


def _signed_in_as(client: TestClient) -> str | None:
    response = client.get("/api/v3/user")
    return response.json()["login"] if response.status_code == 200 else None


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_state_must_be_present_genuine_unused_and_from_this_browser(
    client: TestClient,
    db: Database,
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> None:
    oidc_source()
    oidc_browser.oidc_account = "alice"
    callback = oidc_browser.callback_url("/login/sso/oidc")
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    code = query["code"][0]

    missing = client.get(f"/login/sso/oidc/callback?code={code}")
    assert missing.status_code == 400
    assert "no valid state" in missing.text

    forged = client.get(f"/login/sso/oidc/callback?code={code}&state={'x' * 43}")
    assert forged.status_code == 400
    assert "already used or has expired" in forged.text

    # Another browser (no state cookie) delivering this callback: refused, and the state burnt.
    other = TestClient(client.app, base_url="http://testserver")
    foreign = other.get(f"{parts.path}?{parts.query}")
    assert foreign.status_code == 400
    assert "started in another browser" in foreign.text
    replay = client.get(f"{parts.path}?{parts.query}")
    assert replay.status_code == 400
    assert "already used" in replay.text

    assert _count(db, User) == 0
    assert _count(db, ExternalIdentity) == 0
    with db.session() as session:
        failures = session.scalars(
            select(AuditEvent).where(AuditEvent.event == "sso.sign_in_failed")
        ).all()
        assert len(failures) == 4


def test_a_replayed_authorization_code_is_refused_by_the_provider(
    client: TestClient,
    db: Database,
    oidc_peer: OIDCProvider,
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> None:
    oidc_source()
    oidc_browser.oidc_account = "alice"
    first = urlsplit(oidc_browser.callback_url("/login/sso/oidc"))
    used_code = parse_qs(first.query)["code"][0]
    assert client.get(f"{first.path}?{first.query}", follow_redirects=False).status_code == 303
    log_out(client)

    # A fresh, genuine state carrying the already-redeemed code.
    second = urlsplit(oidc_browser.callback_url("/login/sso/oidc"))
    state = parse_qs(second.query)["state"][0]
    replay = client.get(f"{second.path}?code={used_code}&state={state}")
    assert replay.status_code == 400
    assert "refused the authorization code" in replay.text
    assert "invalid_grant" in replay.text or "grant request is invalid" in replay.text
    assert _signed_in_as(client) is None

    # RFC 9207: the `iss` the provider adds to its redirect must be the configured issuer.
    third = urlsplit(oidc_browser.callback_url("/login/sso/oidc"))
    query = parse_qs(third.query)
    assert query["iss"] == [oidc_peer.issuer]
    mixed_up = client.get(
        f"{third.path}?code={query['code'][0]}&state={query['state'][0]}"
        "&iss=https%3A%2F%2Fevil.example"
    )
    assert mixed_up.status_code == 400
    assert "came from another provider" in mixed_up.text
    assert _signed_in_as(client) is None
    assert _count(db, User) == 1


def test_sign_up_disabled_and_disabled_sources(
    client: TestClient,
    db: Database,
    settings,
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> None:
    source = oidc_source()
    settings.allow_signup = False
    page = oidc_browser.sign_in_with("oidc", "alice")
    assert "Sign-up is disabled" in page.text
    assert _count(db, User) == 0

    with db.session() as session:
        session.get(AuthSource, source.id).enabled = False
    disabled = client.get("/login/sso/oidc", follow_redirects=False)
    assert disabled.status_code == 403
    assert "disabled" in disabled.text
    assert client.get("/login/sso/nope", follow_redirects=False).status_code == 404
    assert 'data-testid="sso-oidc"' not in client.get("/login").text


def test_sign_in_buttons_on_the_login_page(
    client: TestClient, oidc_source: Callable[..., AuthSource]
) -> None:
    oidc_source()
    page = client.get("/login?next=/explore")
    assert 'data-testid="sso-oidc"' in page.text
    assert 'href="/login/sso/oidc?next=/explore"' in page.text


def test_next_is_kept_on_site_and_open_redirects_are_dropped(
    client: TestClient,
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    github_source()
    github_peer.reset(
        {
            "octocat": github_user(
                1, "octocat", emails=[{"email": "o@example.com", "primary": True, "verified": True}]
            )
        },
        "octocat",
    )
    for next_path, expected in [
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https:evil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("%2f%2fevil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("JavaScript:alert(1)", "/"),
        ("/\t/evil.example", "/"),
        ("/explore?q=1", "/explore?q=1"),
    ]:
        query = httpx.QueryParams({"next": next_path})
        callback = urlsplit(browser.callback_url(f"/login/sso/github?{query}"))
        done = client.get(f"{callback.path}?{callback.query}", follow_redirects=False)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == expected, next_path
        log_out(client)


def test_provider_error_and_foreign_provider_state(
    client: TestClient,
    db: Database,
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    gitlab_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    github_source()
    gitlab_source()
    github_peer.reset({}, "")  # nobody signed in at GitHub: it answers access_denied
    denied = browser.sign_in_with("github")
    assert denied.status_code == 400
    assert "did not sign you in (access_denied)" in denied.text

    start = client.get("/login/sso/github", follow_redirects=False)
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    crossed = client.get(f"/login/sso/gitlab/callback?code=abc&state={state}")
    assert crossed.status_code == 400
    assert "started for another provider" in crossed.text
    assert _count(db, ExternalIdentity) == 0


def test_a_link_callback_only_completes_for_the_user_who_started_it(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    make_user("dana")
    make_user("eve")
    github_source()
    github_peer.reset(
        {
            "dana-gh": github_user(
                11, "dana-gh", emails=[{"email": "d@ex.net", "primary": True, "verified": True}]
            )
        },
        "dana-gh",
    )
    log_in(client, "dana")
    start = post_form(client, "/settings/linked-accounts", "/settings/linked-accounts/link/github")
    callback = urlsplit(browser.callback_url(start.headers["location"]))
    log_out(client)
    log_in(client, "eve")
    refused = client.get(f"{callback.path}?{callback.query}")
    assert refused.status_code == 400
    assert "Sign in to the account you are linking first" in refused.text
    assert _count(db, ExternalIdentity) == 0
