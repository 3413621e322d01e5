"""Sign-up, sign-in, sign-out and their redirects, through the HTML forms."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User, WebSession
from opencodehub.db.engine import Database
from opencodehub.web.auth import safe_next
from tests.conftest import PASSWORD
from tests.web.forms import csrf_from, log_in, log_out, page_token, sign_up


def _user(db: Database, name: str) -> User:
    with db.session() as session:
        user = accounts.get_user(session, name)
        assert user is not None
        return user


def _session_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(WebSession)) or 0


def test_signup_first_user_is_admin_second_is_not(client: TestClient, db: Database) -> None:
    response = sign_up(client, "alice")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.cookies.get("och_session")
    assert cookie
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/" in set_cookie
    home = client.get("/")
    assert "Welcome to OpenCodeHub, alice!" in home.text
    assert 'data-testid="dashboard-organizations"' not in home.text
    assert _user(db, "alice").is_site_admin

    other = TestClient(client.app, base_url="http://testserver")
    assert sign_up(other, "bob").status_code == 303
    assert not _user(db, "bob").is_site_admin


def test_signup_shows_field_errors_and_writes_nothing(client: TestClient, db: Database) -> None:
    sign_up(client, "alice")
    log_out(client)
    cases = [
        ({"username": "-bad"}, "may only contain"),
        ({"username": "a" * 10_000}, "may only contain"),
        ({"username": "ALICE"}, "username is already taken"),
        ({"username": "settings"}, "is reserved"),
        ({"username": "bob\x00"}, "may only contain"),
        ({"username": "b\u043eb"}, "may only contain"),  # a Cyrillic look-alike o
        ({"username": "bob'; DROP TABLE users;--"}, "may only contain"),
        ({"email": "not-an-email"}, "not a valid email address"),
        ({"email": "ALICE@example.com"}, "email is already in use"),
        ({"password": "short"}, "at least 8 characters"),
    ]
    for override, message in cases:
        data = {"username": "bob", "email": "bob@example.com", "password": PASSWORD, **override}
        response = client.post(
            "/signup", data={"csrf_token": page_token(client, "/signup"), **data}
        )
        assert response.status_code == 422, override
        assert message in response.text, (override, response.text[-2000:])
        assert "och_session" not in response.cookies
    with db.session() as session:
        assert accounts.count_users(session) == 1


def test_signup_disabled_by_setting(client: TestClient, db: Database) -> None:
    client.app.state.settings = client.app.state.settings.model_copy(update={"allow_signup": False})
    page = client.get("/signup")
    assert page.status_code == 403
    assert "Sign-up is disabled" in page.text
    assert 'href="/signup"' not in client.get("/login").text
    token = csrf_from(client.get("/login").text)
    response = client.post(
        "/signup",
        data={"csrf_token": token, "username": "x", "email": "x@example.com", "password": PASSWORD},
    )
    assert response.status_code == 403
    with db.session() as session:
        assert accounts.count_users(session) == 0


@pytest.mark.parametrize("login", ["alice", "ALICE", "alice@example.com", "Alice@Example.com"])
def test_login_by_username_or_email(
    client: TestClient, make_user: Callable[..., User], login: str
) -> None:
    make_user("alice")
    response = log_in(client, login)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert "alice" in client.get("/").text
    assert 'data-testid="sign-out"' in client.get("/").text


def test_wrong_password_and_unknown_user(
    client: TestClient, make_user: Callable[..., User], db: Database
) -> None:
    make_user("alice")
    for login, password in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("", ""),
        ("alice", "x" * 10_000),
        ("alice\x00", PASSWORD),
    ]:
        response = log_in(client, login, password)
        assert response.status_code == 422
        assert "Incorrect username, email or password." in response.text
        assert "och_session" not in response.cookies
    assert _session_count(db) == 0


def test_login_rotates_the_session_and_logout_deletes_it(
    client: TestClient, make_user: Callable[..., User], db: Database
) -> None:
    make_user("alice")
    log_in(client)
    first = client.cookies.get("och_session")
    assert _session_count(db) == 1
    # Signing in again from the same browser replaces its session rather than adding one.
    response = client.post(
        "/login",
        data={"csrf_token": page_token(client, "/"), "login": "alice", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303
    second = client.cookies.get("och_session")
    assert second and second != first
    assert _session_count(db) == 1

    response = log_out(client)
    assert response.status_code == 303
    assert _session_count(db) == 0
    assert "och_session" not in client.cookies
    home = client.get("/")
    assert "You have signed out." in home.text
    assert 'href="/login"' in home.text


def test_logout_only_accepts_post(client: TestClient, make_user: Callable[..., User]) -> None:
    make_user("alice")
    log_in(client)
    assert client.get("/logout").status_code == 405
    assert "alice" in client.get("/").text


def test_login_page_redirects_when_signed_in(
    client: TestClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    log_in(client)
    response = client.get("/login?next=/settings/keys", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/settings/keys"


def test_pages_needing_sign_in_redirect_with_next(
    client: TestClient, make_user: Callable[..., User]
) -> None:
    response = client.get("/settings/keys", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/settings/keys"
    page = client.get(response.headers["location"])
    assert 'name="next" value="/settings/keys"' in page.text
    make_user("alice")
    response = log_in(client, next_path="/settings/keys")
    assert response.headers["location"] == "/settings/keys"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "///evil.example",
        "/" + "a" * 5000,
    ],
)
def test_open_redirects_are_refused(
    client: TestClient, make_user: Callable[..., User], target: str
) -> None:
    make_user("alice")
    response = log_in(client, next_path=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_safe_next_accepts_same_site_paths() -> None:
    assert safe_next("/settings/keys?tab=1#x") == "/settings/keys?tab=1#x"
    assert safe_next("/%2F%2Fevil") == "/%2F%2Fevil"  # stays a path on this site
    assert safe_next(None) == "/"
    assert safe_next("") == "/"
    assert safe_next("//evil", default="/home") == "/home"
