"""An account created through a provider has no password: it enters sudo mode by signing in
again with that provider, then sets its first password (and may then unlink the provider).
GitHub and GitLab are played by the local stand-ins of tests/peers/."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.accounts.sso.models import AuthSource, ExternalIdentity
from opencodehub.db.engine import Database
from tests.accounts.sso.conftest import (
    SUDO_PAGE,
    Browser,
    OAuthPeer,
    audit_events,
    expire_sudo,
    start_sudo,
    sudo_active,
    verified_github_user,
)
from tests.web.forms import csrf_from, log_in, log_out, post_form

NEW_PASSWORD = "a brand new passphrase"


def _set_password(client: TestClient, password: str = NEW_PASSWORD) -> Response:
    page = client.get("/settings/password")
    return client.post(
        "/settings/password",
        data={
            "csrf_token": csrf_from(page.text),
            "new_password": password,
            "confirm_password": password,
        },
        headers={"referer": "http://testserver/settings/password"},
        follow_redirects=False,
    )


def test_provider_account_sets_a_password_after_reauthenticating_with_the_provider(
    client: TestClient,
    db: Database,
    github_peer: OAuthPeer,
    github_sign_up: Callable[..., Browser],
    gitlab_source: Callable[..., AuthSource],
) -> None:
    gitlab_source()
    browser = github_sign_up(intruder=verified_github_user(6, "intruder", "intruder@example.com"))

    page = client.get("/settings/password")
    assert 'data-testid="no-password"' in page.text
    assert 'name="current_password"' not in page.text

    # Outside sudo mode nothing is set; the browser is sent to confirm access first.
    refused = _set_password(client)
    assert refused.status_code == 303
    forwarded = client.get(refused.headers["location"], follow_redirects=False)
    assert forwarded.headers["location"] == "/sudo?next=/settings/password"
    with db.session() as session:
        user = session.scalars(select(User)).one()
        assert user.password_hash is None
    sudo_page = client.get(forwarded.headers["location"])
    assert 'data-testid="sudo-sso"' in sudo_page.text
    assert "Re-authenticate with GitHub" in sudo_page.text
    assert "Re-authenticate with GitLab" not in sudo_page.text  # not linked
    assert 'name="password"' not in sudo_page.text

    # Only providers linked to the account; only with a CSRF token.
    assert client.post("/sudo/sso/github", data={"next": "/"}).status_code == 403
    unlinked = post_form(client, SUDO_PAGE, "/sudo/sso/gitlab")
    assert unlinked.status_code == 404

    # Another GitHub account at the provider proves nothing about this one.
    github_peer.sign_in_as("intruder")
    start = start_sudo(client, "github")
    assert start.status_code == 303
    other = browser.get(start.headers["location"])
    assert other.status_code == 403
    assert "not the one linked" in other.text
    assert not sudo_active(db)
    assert audit_events(db, "sudo.granted") == []
    assert client.get("/api/v3/user").json()["login"] == "octo"  # still signed in as before

    github_peer.sign_in_as("octo")
    start = start_sudo(client, "github")
    back = browser.get(start.headers["location"])
    assert back.status_code == 200
    assert str(back.request.url).endswith("/settings/password")
    assert sudo_active(db)
    assert [event.details for event in audit_events(db, "sudo.granted")] == [
        {"method": "github:github"}
    ]

    mismatch = client.post(
        "/settings/password",
        data={
            "csrf_token": csrf_from(back.text),
            "new_password": NEW_PASSWORD,
            "confirm_password": "something else",
        },
        follow_redirects=False,
    )
    assert mismatch.status_code == 422
    assert _set_password(client, "short").status_code == 422
    done = _set_password(client)
    assert done.status_code == 303
    assert [event.event for event in audit_events(db, "user.password_set")] == ["user.password_set"]
    assert audit_events(db, "password.changed") == []
    with db.session() as session:
        user = session.scalars(select(User)).one()
        assert accounts.check_password(user, NEW_PASSWORD)
        identity_id = session.scalars(select(ExternalIdentity.id)).one()
    # Now a password stands in for the provider: the last identity may be unlinked...
    unlinked_ok = post_form(
        client, "/settings/linked-accounts", f"/settings/linked-accounts/{identity_id}/unlink"
    )
    assert unlinked_ok.status_code == 303
    # ...and the password signs in; changing it from now on needs the current one.
    log_out(client)
    assert log_in(client, "octo", NEW_PASSWORD).status_code == 303
    page = client.get("/settings/password")
    assert 'name="current_password"' in page.text
    expire_sudo(db)
    sudo_page = client.get("/sudo?next=/")
    assert 'name="password"' in sudo_page.text
    assert 'data-testid="sudo-sso"' not in sudo_page.text
