"""Sign-in with an OpenID Connect provider (panva's certified `oidc-provider`), end to end."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts.models import Email, User
from opencodehub.accounts.security.models import AuditEvent
from opencodehub.accounts.sso.models import AuthSource, ExternalIdentity
from opencodehub.db.engine import Database
from tests.accounts.sso.conftest import Browser
from tests.web.forms import log_out, post_form


def _signed_in_as(client: TestClient) -> str | None:
    response = client.get("/api/v3/user")
    return response.json()["login"] if response.status_code == 200 else None


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_first_sign_in_creates_the_account_and_the_next_one_reuses_it(
    client: TestClient,
    db: Database,
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> None:
    oidc_source()
    start = client.get("/login/sso/oidc?next=/explore", follow_redirects=False)
    assert start.status_code == 303
    authorize = urlsplit(start.headers["location"])
    params = parse_qs(authorize.query)
    assert params["code_challenge_method"] == ["S256"]
    assert len(params["code_challenge"][0]) == 43
    assert params["nonce"][0] and params["state"][0]
    assert "openid" in params["scope"][0].split()
    # The state travels in an HttpOnly cookie scoped to the sign-in paths, never in the page.
    cookie = start.headers["set-cookie"]
    assert "och_sso_state=" in cookie and "HttpOnly" in cookie and "Path=/login/sso" in cookie

    oidc_browser.oidc_account = "alice"
    landed = oidc_browser.get(start.headers["location"])
    assert landed.status_code == 200
    assert str(landed.request.url).endswith("/explore")
    assert _signed_in_as(client) == "alice"
    with db.session() as session:
        user = session.scalar(select(User).where(User.lower_username == "alice"))
        assert user is not None and user.password_hash is None and user.full_name == "Alice Liddell"
        email = session.scalar(select(Email).where(Email.user_id == user.id))
        assert email is not None and email.email == "alice@example.com" and email.is_verified
        identity = session.scalar(select(ExternalIdentity))
        assert identity is not None and identity.user_id == user.id
        assert identity.subject == "alice" and identity.email_verified
        events = [e.event for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert [e for e in events if e.startswith("sso.")] == [
            "sso.signup",
            "sso.link",
            "sso.sign_in",
        ]

    log_out(client)
    assert _signed_in_as(client) is None
    oidc_browser.sign_in_with("oidc", "alice")
    assert _signed_in_as(client) == "alice"
    assert _count(db, User) == 1
    assert _count(db, ExternalIdentity) == 1


def test_unverified_email_creates_nothing_and_offers_linking(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> None:
    make_user("carol")
    oidc_source()
    page = oidc_browser.sign_in_with("oidc", "dodo")
    assert page.status_code == 200
    assert str(page.request.url).endswith("/login/sso/-/continue")
    assert "did not confirm an email address" in page.text
    assert 'data-testid="sso-signup-form"' not in page.text
    assert _count(db, ExternalIdentity) == 0

    # Sign-up is not offered, and posting to it anyway is refused.
    refused = post_form(
        client, "/login/sso/-/continue", "/login/sso/-/continue/signup", {"username": "dodo"}
    )
    assert refused.status_code == 403
    assert _count(db, User) == 1

    wrong = post_form(
        client,
        "/login/sso/-/continue",
        "/login/sso/-/continue/link",
        {"login": "carol", "password": "not the password"},
    )
    assert wrong.status_code == 422
    assert "Incorrect username" in wrong.text
    assert _count(db, ExternalIdentity) == 0

    linked = post_form(
        client,
        "/login/sso/-/continue",
        "/login/sso/-/continue/link",
        {"login": "carol", "password": "correct horse battery staple"},
    )
    assert linked.status_code == 303
    assert _signed_in_as(client) == "carol"
    with db.session() as session:
        identity = session.scalar(select(ExternalIdentity))
        assert identity is not None and identity.subject == "dodo"
        # The provider did not verify it, so it is not stored as verified, nor added to carol.
        assert identity.email == "dodo@example.com" and not identity.email_verified
        assert session.scalar(select(Email).where(Email.lower_email == "dodo@example.com")) is None

    # An email of an existing account never links by itself: only the offer is made.
    log_out(client)
    oidc_browser.forget_provider_sessions()
    make_user("bob")  # bob@example.com, verified
    page = oidc_browser.sign_in_with("oidc", "mallory")
    assert str(page.request.url).endswith("/login/sso/-/continue")
    assert "already uses bob@example.com" in page.text
    assert _signed_in_as(client) is None
    assert _count(db, ExternalIdentity) == 1  # carol's only
    assert _count(db, User) == 2
