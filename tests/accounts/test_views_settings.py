"""The account settings pages: every form with good and bad input."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.db.engine import Database
from tests.conftest import PASSWORD
from tests.web.forms import log_in, post_form


@pytest.fixture
def alice(client: TestClient, make_user: Callable[..., User]) -> User:
    user = make_user("alice")
    assert log_in(client).status_code == 303
    return user


def _reload(db: Database, name: str = "alice") -> User:
    with db.session() as session:
        user = accounts.get_user(session, name)
        assert user is not None
        _ = user.emails
        return user


def _generate_key(tmp_path: Path, name: str = "id_ed25519") -> tuple[str, str]:
    """(public key line, fingerprint) from the real ssh-keygen."""
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(path)],
        check=True,
    )
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    return path.with_suffix(".pub").read_text().strip(), fingerprint


def test_settings_redirects_to_profile(client: TestClient, alice: User) -> None:
    response = client.get("/settings", follow_redirects=False)
    assert response.headers["location"] == "/settings/profile"


def test_profile_update_and_bad_input(client: TestClient, alice: User, db: Database) -> None:
    response = post_form(
        client,
        "/settings/profile",
        "/settings/profile",
        {
            "full_name": "Alice Liddell",
            "bio": "Down the <b>rabbit</b> hole",
            "company": "Wonderland",
            "location": "Oxford",
            "website": "example.com",
            "public_email": "alice@example.com",
        },
    )
    assert response.status_code == 303
    page = client.get("/settings/profile")
    assert "Your profile was updated." in page.text
    assert "Down the &lt;b&gt;rabbit&lt;/b&gt; hole" in page.text  # escaped, never raw HTML
    saved = _reload(db)
    assert (saved.full_name, saved.website) == ("Alice Liddell", "http://example.com")

    for field, value, message in [
        ("website", "javascript:alert(1)", "http or https"),
        ("full_name", "x" * 10_000, "255"),
        ("public_email", "someone@else.com", "one of your own email addresses"),
        ("bio", "nul\x00byte", ""),
    ]:
        response = post_form(client, "/settings/profile", "/settings/profile", {field: value})
        assert response.status_code == 422, (field, response.text[-1500:])
        assert message in response.text
        assert 'class="field-error"' in response.text or "alert-error" in response.text
    assert _reload(db).full_name == "Alice Liddell"


def test_password_change(client: TestClient, alice: User, db: Database) -> None:
    other_browser = TestClient(client.app, base_url="http://testserver")
    assert log_in(other_browser).status_code == 303
    bad = [
        (
            {"current_password": "wrong", "new_password": "n" * 12, "confirm_password": "n" * 12},
            "is not correct",
        ),
        (
            {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"},
            "at least 8 characters",
        ),
        (
            {"current_password": PASSWORD, "new_password": "n" * 12, "confirm_password": "m" * 12},
            "does not match",
        ),
    ]
    for data, message in bad:
        response = post_form(client, "/settings/password", "/settings/password", data)
        assert response.status_code == 422
        assert message in response.text
    assert accounts.check_password(_reload(db), PASSWORD)

    response = post_form(
        client,
        "/settings/password",
        "/settings/password",
        {"current_password": PASSWORD, "new_password": "n" * 12, "confirm_password": "n" * 12},
    )
    assert response.status_code == 303
    assert "1 other session signed out" in client.get("/settings/password").text
    assert accounts.check_password(_reload(db), "n" * 12)
    # The other browser was signed out; this one was not.
    assert other_browser.get("/settings/password", follow_redirects=False).status_code == 303
    assert client.get("/settings/password").status_code == 200


def test_emails_add_primary_remove(client: TestClient, alice: User, db: Database) -> None:
    assert (
        post_form(
            client, "/settings/emails", "/settings/emails", {"email": "alt@example.com"}
        ).status_code
        == 303
    )
    for email, message in [
        ("alt@example.com", "already in use"),
        ("ALT@EXAMPLE.COM", "already in use"),
        ("not an email", "not a valid email address"),
        ("a@b.c\x00", "not a valid email address"),
    ]:
        response = post_form(client, "/settings/emails", "/settings/emails", {"email": email})
        assert response.status_code == 422
        assert message in response.text
    user = _reload(db)
    primary = next(email for email in user.emails if email.is_primary)
    alternate = next(email for email in user.emails if not email.is_primary)

    response = post_form(client, "/settings/emails", f"/settings/emails/{primary.id}/delete")
    assert response.status_code == 422
    assert "primary address cannot be removed" in response.text

    response = post_form(client, "/settings/emails", f"/settings/emails/{alternate.id}/primary")
    assert response.status_code == 303
    assert _reload(db).primary_email == "alt@example.com"
    response = post_form(client, "/settings/emails", f"/settings/emails/{primary.id}/delete")
    assert response.status_code == 303
    assert [email.email for email in _reload(db).emails] == ["alt@example.com"]
    # Someone else's or a missing address is simply not found.
    assert (
        post_form(client, "/settings/emails", "/settings/emails/999999/delete").status_code == 404
    )


def test_ssh_keys_add_list_delete(
    client: TestClient, alice: User, db: Database, tmp_path: Path
) -> None:
    public_key, fingerprint = _generate_key(tmp_path)
    response = post_form(
        client, "/settings/keys", "/settings/keys", {"title": "Laptop", "key": public_key}
    )
    assert response.status_code == 303
    page = client.get("/settings/keys")
    assert "Laptop" in page.text and fingerprint in page.text

    for title, key, message in [
        ("Again", public_key, "already in use"),
        ("Junk", "ssh-ed25519 not-base64!", "key: "),
        ("Empty", "", "key: "),
        ("Huge", "ssh-ed25519 " + "A" * 10_000, "key: "),
        ("DSA", "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "key: "),
        ("x" * 10_000, _generate_key(tmp_path, "second")[0], "title: "),
    ]:
        response = post_form(
            client, "/settings/keys", "/settings/keys", {"title": title, "key": key}
        )
        assert response.status_code == 422, title
        assert message in response.text
        assert "field-error" in response.text
    with db.session() as session:
        keys = accounts.list_ssh_keys(session, _reload(db))
    assert len(keys) == 1

    response = post_form(client, "/settings/keys", f"/settings/keys/{keys[0].id}/delete")
    assert response.status_code == 303
    assert "There are no SSH keys" in client.get("/settings/keys").text


def test_keys_of_another_user_cannot_be_deleted(
    client: TestClient, alice: User, make_user: Callable[..., User], db: Database, tmp_path: Path
) -> None:
    bob = make_user("bob")
    with db.session() as session:
        owner = session.get(User, bob.id)
        assert owner is not None
        key = accounts.add_ssh_key(session, owner, "bob", _generate_key(tmp_path)[0])
        key_id = key.id
    assert post_form(client, "/settings/keys", f"/settings/keys/{key_id}/delete").status_code == 404
    with db.session() as session:
        assert len(accounts.list_ssh_keys(session, bob)) == 1


def test_tokens_created_shown_once_and_revoked(
    client: TestClient, alice: User, db: Database
) -> None:
    response = post_form(
        client,
        "/settings/tokens",
        "/settings/tokens",
        {"note": "ci", "expires": "30", "scopes": ["repo", "read:org"]},
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    shown = re.search(r'id="new-token-value">(och_[A-Za-z0-9]+)<', response.text)
    assert shown
    token = shown.group(1)
    # The token works for the API, and is never shown again.
    api = client.get("/api/v3/user", headers={"Authorization": f"token {token}"})
    assert api.status_code in (200, 404)  # 404 until the users API exists; auth passed
    assert api.status_code != 401
    listing = client.get("/settings/tokens")
    assert token not in listing.text
    assert token[-8:] in listing.text
    assert "repo" in listing.text and "Expires on" in listing.text

    for data, message in [
        ({"note": "", "expires": "30"}, "must be 1 to 255 characters"),
        ({"note": "x" * 10_000, "expires": "30"}, "must be 1 to 255 characters"),
        ({"note": "bad", "expires": "9999"}, "choose one of the listed periods"),
        ({"note": "bad", "expires": "-1"}, "choose one of the listed periods"),
        ({"note": "bad", "expires": "30", "scopes": ["root"]}, "unknown scope"),
    ]:
        response = post_form(client, "/settings/tokens", "/settings/tokens", data)
        assert response.status_code == 422
        assert message in response.text
        assert "new-token-value" not in response.text
    with db.session() as session:
        tokens = accounts.list_tokens(session, _reload(db))
    assert len(tokens) == 1

    response = post_form(client, "/settings/tokens", f"/settings/tokens/{tokens[0].id}/revoke")
    assert response.status_code == 303
    assert (
        client.get("/api/v3/user", headers={"Authorization": f"token {token}"}).status_code == 401
    )
    assert "You have no personal access tokens." in client.get("/settings/tokens").text


def test_token_without_expiry(client: TestClient, alice: User) -> None:
    response = post_form(
        client, "/settings/tokens", "/settings/tokens", {"note": "forever", "expires": "never"}
    )
    assert response.status_code == 201
    assert "Never expires" in response.text


def test_sessions_list_revoke_and_sign_out_elsewhere(
    client: TestClient, alice: User, db: Database
) -> None:
    second = TestClient(client.app, base_url="http://testserver")
    third = TestClient(client.app, base_url="http://testserver")
    assert log_in(second).status_code == 303
    assert log_in(third).status_code == 303
    page = client.get("/settings/sessions")
    assert page.text.count('data-testid="session-row"') == 3
    assert page.text.count('data-testid="current-session"') == 1

    with db.session() as session:
        sessions = accounts.list_web_sessions(session, _reload(db))
    second_id = next(
        record.id
        for record in sessions
        if record.session_hash
        == accounts.sha256_hex(second.cookies.get(accounts.SESSION_COOKIE) or "")
    )
    response = post_form(client, "/settings/sessions", f"/settings/sessions/{second_id}/revoke")
    assert response.status_code == 303
    assert second.get("/settings/sessions", follow_redirects=False).status_code == 303
    assert third.get("/settings/sessions").status_code == 200

    response = post_form(client, "/settings/sessions", "/settings/sessions/revoke-others")
    assert response.status_code == 303
    assert "Signed out of 1 other session." in client.get("/settings/sessions").text
    assert third.get("/settings/sessions", follow_redirects=False).status_code == 303
    # Revoking a session that is not yours, or does not exist, is not found.
    assert (
        post_form(client, "/settings/sessions", "/settings/sessions/999999/revoke").status_code
        == 404
    )


def test_revoking_the_current_session_signs_out(
    client: TestClient, alice: User, db: Database
) -> None:
    with db.session() as session:
        (record,) = accounts.list_web_sessions(session, _reload(db))
    response = post_form(client, "/settings/sessions", f"/settings/sessions/{record.id}/revoke")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert client.get("/settings/sessions", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path", ["/settings/emails/abc/delete", "/settings/keys/..%2f/delete"])
def test_malformed_ids_are_clear_errors(client: TestClient, alice: User, path: str) -> None:
    response = post_form(client, "/settings/keys", path)
    assert response.status_code in (404, 422)
    assert "<html" in response.text
    assert "Signed in as <strong>alice</strong>" in response.text  # still in the layout
