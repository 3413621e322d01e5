"""Linking a provider account to an existing account that has a second factor: the password
alone links nothing and starts no session; the identity is linked only after the second factor.
GitHub is played by the local stand-in of tests/peers/github.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts.models import User, WebSession
from opencodehub.accounts.security import service as security
from opencodehub.accounts.security import totp
from opencodehub.accounts.security import webauthn as keys
from opencodehub.accounts.security.models import AuditEvent
from opencodehub.accounts.sso.models import AuthSource, ExternalIdentity, SSOPendingSignIn
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from tests.accounts.security.authenticator import SoftAuthenticator
from tests.accounts.security.conftest import two_factor_post
from tests.accounts.sso.conftest import Browser, OAuthPeer
from tests.conftest import PASSWORD
from tests.peers.github import github_user
from tests.web.forms import csrf_from, log_in, log_out, page_token, post_form

STEP = 60_000_000


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    now = [STEP]
    monkeypatch.setattr(totp, "current_step", lambda at=None: now[0])
    return now


def _enable_totp(db: Database, settings: Settings, user: User, step: int) -> tuple[str, list[str]]:
    with db.session() as session:
        owner = session.get(User, user.id)
        assert owner is not None
        secret = security.start_totp_enrolment(session, settings.secret, owner)
        codes = security.confirm_totp(
            session, settings.secret, owner, totp.code_at_step(secret, step)
        )
        assert codes is not None
        return secret, codes


def _count(db: Database, model: type, *where: object) -> int:
    with db.session() as session:
        statement = select(func.count()).select_from(model)
        for condition in where:
            statement = statement.where(condition)  # type: ignore[arg-type]
        return session.scalar(statement) or 0


def _signed_in_as(client: TestClient) -> str | None:
    response = client.get("/api/v3/user")
    return response.json()["login"] if response.status_code == 200 else None


def _reach_link_form(browser: Browser, github_peer: OAuthPeer) -> None:
    github_peer.reset(
        {
            "dana-gh": github_user(
                11,
                "dana-gh",
                emails=[{"email": "dana@example.com", "primary": True, "verified": True}],
            )
        },
        "dana-gh",
    )
    page = browser.sign_in_with("github", next_path="/settings/profile")
    assert str(page.request.url).endswith("/login/sso/-/continue")
    # The address belongs to dana: no new account, only the offer to link.
    assert 'data-testid="sso-signup-refused"' in page.text
    assert 'data-testid="sso-link-form"' in page.text


def test_linking_an_account_with_totp_waits_for_the_second_factor(
    client: TestClient,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
    clock: list[int],
) -> None:
    dana = make_user("dana")
    secret, recovery_codes = _enable_totp(db, settings, dana, clock[0])
    github_source()
    _reach_link_form(browser, github_peer)

    wrong_password = post_form(
        client,
        "/login/sso/-/continue",
        "/login/sso/-/continue/link",
        {"login": "dana", "password": "not the password"},
    )
    assert wrong_password.status_code == 422
    assert _count(db, ExternalIdentity) == 0

    first_step = post_form(
        client,
        "/login/sso/-/continue",
        "/login/sso/-/continue/link",
        {"login": "dana", "password": PASSWORD},
    )
    assert first_step.status_code == 303
    assert first_step.headers["location"] == "/login/two-factor"
    # The password alone: nothing linked, no session, the provider account still waiting.
    assert _count(db, ExternalIdentity) == 0
    assert _count(db, WebSession) == 0
    assert _count(db, SSOPendingSignIn) == 1
    assert _signed_in_as(client) is None
    assert _count(db, AuditEvent, AuditEvent.event == "sso.link") == 0

    # Wrong second factors link nothing.
    clock[0] += 1
    wrong_code = totp.code_at_step(secret, clock[0] + 5)
    assert two_factor_post(client, code=wrong_code).status_code == 422
    assert two_factor_post(client, recovery_code="aaaaa-bbbbb").status_code == 422
    assert _count(db, ExternalIdentity) == 0
    assert _count(db, WebSession) == 0
    assert _signed_in_as(client) is None

    done = two_factor_post(client, code=totp.code_at_step(secret, clock[0]))
    assert done.status_code == 303
    assert done.headers["location"] == "/settings/profile"
    assert _signed_in_as(client) == "dana"
    with db.session() as session:
        identity = session.scalar(select(ExternalIdentity))
        assert identity is not None and identity.user_id == dana.id
        assert identity.subject == "11"
        assert session.scalar(select(func.count()).select_from(SSOPendingSignIn)) == 0
        sign_in = session.scalars(
            select(AuditEvent).where(AuditEvent.event == "user.sign_in")
        ).one()
        assert sign_in.details == {"method": "github:github", "two_factor": "totp"}
    landed = client.get("/settings/profile")
    assert "Your GitHub account is now linked." in landed.text

    # From now on GitHub signs dana in, still through the second factor (a recovery code here).
    client.cookies.clear()
    browser.forget_provider_sessions()
    again = browser.sign_in_with("github")
    assert str(again.request.url).endswith("/login/two-factor")
    assert _signed_in_as(client) is None
    assert two_factor_post(client, recovery_code=recovery_codes[0]).status_code == 303
    assert _signed_in_as(client) == "dana"


def test_abandoned_second_factor_leaves_the_identity_unlinked(
    client: TestClient,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
    clock: list[int],
) -> None:
    dana = make_user("dana")
    secret, _ = _enable_totp(db, settings, dana, clock[0])
    github_source()
    _reach_link_form(browser, github_peer)
    first_step = post_form(
        client,
        "/login/sso/-/continue",
        "/login/sso/-/continue/link",
        {"login": "dana", "password": PASSWORD},
    )
    assert first_step.headers["location"] == "/login/two-factor"
    # The provider account was linked elsewhere meanwhile (here: the waiting record is gone):
    # passing the second factor then links nothing and starts no session.
    with db.session() as session:
        session.query(SSOPendingSignIn).delete()
    clock[0] += 1
    failed = two_factor_post(client, code=totp.code_at_step(secret, clock[0]))
    assert failed.status_code == 400
    assert "expired" in failed.text
    assert _count(db, ExternalIdentity) == 0
    assert _count(db, WebSession) == 0
    assert _signed_in_as(client) is None


def _register_security_key(client: TestClient, settings: Settings) -> SoftAuthenticator:
    """Register a software security key for the signed-in account (signing in grants sudo)."""
    rp_id, origin = keys.relying_party(settings)
    device = SoftAuthenticator(rp_id=rp_id, origin=origin)
    headers = {"X-CSRF-Token": page_token(client, "/settings/security")}
    options = client.post("/settings/security/keys/options", headers=headers)
    assert options.status_code == 200, options.text
    registered = client.post(
        "/settings/security/keys",
        json={"name": "YubiKey", "credential": device.attest(options.json())},
        headers=headers,
    )
    assert registered.status_code == 201, registered.text
    return device


def _key_challenge(client: TestClient) -> tuple[dict[str, Any], str]:
    page = client.get("/login/two-factor")
    assert page.status_code == 200 and "Use a security key" in page.text
    token = csrf_from(page.text)
    options = client.post("/login/two-factor/webauthn/options", headers={"X-CSRF-Token": token})
    assert options.status_code == 200, options.text
    return options.json(), token


def test_linking_an_account_with_a_security_key_waits_for_the_assertion(
    client: TestClient,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    dana = make_user("dana")
    assert log_in(client, "dana").status_code == 303
    device = _register_security_key(client, settings)
    log_out(client)
    github_source()
    _reach_link_form(browser, github_peer)

    first_step = post_form(
        client,
        "/login/sso/-/continue",
        "/login/sso/-/continue/link",
        {"login": "dana", "password": PASSWORD},
    )
    assert first_step.status_code == 303
    assert first_step.headers["location"] == "/login/two-factor"
    assert _count(db, ExternalIdentity) == 0
    assert _count(db, WebSession) == 0
    assert _signed_in_as(client) is None

    # A wrong assertion (a signature the key did not make over this challenge) links nothing.
    options, token = _key_challenge(client)
    wrong = client.post(
        "/login/two-factor/webauthn",
        json=device.assert_(options, tamper=True),
        headers={"X-CSRF-Token": token},
    )
    assert wrong.status_code == 422
    # Nor does a genuine assertion over a challenge already used (that attempt consumed it).
    replayed = client.post(
        "/login/two-factor/webauthn", json=device.assert_(options), headers={"X-CSRF-Token": token}
    )
    assert replayed.status_code == 422
    assert _count(db, ExternalIdentity) == 0
    assert _count(db, WebSession) == 0
    assert _count(db, AuditEvent, AuditEvent.event == "sso.link") == 0
    assert _count(db, SSOPendingSignIn) == 1
    assert _signed_in_as(client) is None

    options, token = _key_challenge(client)
    done = client.post(
        "/login/two-factor/webauthn", json=device.assert_(options), headers={"X-CSRF-Token": token}
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"location": "/settings/profile"}
    assert _signed_in_as(client) == "dana"
    with db.session() as session:
        identity = session.scalar(select(ExternalIdentity))
        assert identity is not None and identity.user_id == dana.id and identity.subject == "11"
        assert session.scalar(select(func.count()).select_from(SSOPendingSignIn)) == 0
        sign_ins = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event == "user.sign_in")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert sign_ins is not None
        assert sign_ins.details == {"method": "github:github", "two_factor": "security_key"}
    assert "Your GitHub account is now linked." in client.get("/settings/profile").text
