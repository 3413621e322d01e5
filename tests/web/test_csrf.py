"""CSRF: every state-changing HTML form carries a token, and a wrong one changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import SSHKey, User, WebSession
from opencodehub.db.engine import Database
from opencodehub.web.csrf import verify_csrf
from tests.conftest import PASSWORD
from tests.web.forms import csrf_from, log_in, page_token, sign_up

ED25519_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@example"
)


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 10_000])
def test_anonymous_forms_need_the_double_submit_token(
    client: TestClient, db: Database, token: str | None
) -> None:
    client.get("/signup")  # receives the och_csrf cookie
    data = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/signup", data=data)
    assert response.status_code == 403
    assert "security token" in response.text
    assert _count(db, User) == 0


def test_anonymous_token_without_its_cookie_is_refused(client: TestClient, db: Database) -> None:
    token = page_token(client, "/signup")
    client.cookies.clear()
    response = client.post(
        "/signup",
        data={
            "csrf_token": token,
            "username": "alice",
            "email": "alice@example.com",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 403
    assert _count(db, User) == 0


def test_anonymous_token_from_another_browser_is_refused(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    attacker = TestClient(client.app, base_url="http://testserver")
    attackers_token = page_token(attacker, "/login")
    client.get("/login")
    response = client.post(
        "/login", data={"csrf_token": attackers_token, "login": "alice", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert _count(db, WebSession) == 0


def test_signed_in_forms_need_the_session_token(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    log_in(client)
    for token in (None, "wrong", csrf_from(TestClient(client.app).get("/login").text)):
        data = {"title": "laptop", "key": ED25519_KEY}
        if token is not None:
            data["csrf_token"] = token
        response = client.post("/settings/keys", data=data)
        assert response.status_code == 403
        assert "security token" in response.text
    assert _count(db, SSHKey) == 0
    # Sign-out is a state change too: without the token the session survives.
    assert client.post("/logout", data={}).status_code == 403
    assert _count(db, WebSession) == 1


def test_token_of_an_earlier_session_is_refused(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    log_in(client)
    old_token = page_token(client, "/settings/keys")
    log_in(client)  # rotates the session
    response = client.post(
        "/settings/keys", data={"csrf_token": old_token, "title": "x", "key": ED25519_KEY}
    )
    assert response.status_code == 403
    assert _count(db, SSHKey) == 0


def test_header_token_is_accepted(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    log_in(client)
    token = page_token(client, "/settings/keys")
    response = client.post(
        "/settings/keys",
        data={"title": "laptop", "key": ED25519_KEY},
        headers={"X-CSRF-Token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _count(db, SSHKey) == 1


def test_signup_then_session_token_works(client: TestClient, db: Database) -> None:
    assert sign_up(client).status_code == 303
    token = page_token(client, "/settings/keys")
    response = client.post(
        "/settings/keys",
        data={"csrf_token": token, "title": "laptop", "key": ED25519_KEY},
        follow_redirects=False,
    )
    assert response.status_code == 303
    with db.session() as session:
        alice = accounts.get_user(session, "alice")
        assert alice is not None
        assert len(accounts.list_ssh_keys(session, alice)) == 1


def _has_csrf(route: APIRoute, inherited: list[Any]) -> bool:
    if any(getattr(dependency, "dependency", None) is verify_csrf for dependency in inherited):
        return True
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is verify_csrf:
            return True
        pending.extend(dependant.dependencies)
    return False


def _state_changing_routes(
    routes: list[Any], prefix: str = "", inherited: list[Any] | None = None
) -> list[tuple[str, bool]]:
    """(path, protected) of every state-changing route, through included routers."""
    found: list[tuple[str, bool]] = []
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:  # an included router (FastAPI keeps them as a tree)
            found += _state_changing_routes(
                route.original_router.routes,
                prefix + context.prefix,
                [*(inherited or []), *context.dependencies],
            )
        elif isinstance(route, APIRoute) and route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            found.append((prefix + route.path, _has_csrf(route, inherited or [])))
    return found


def test_every_html_post_route_is_csrf_protected(client: TestClient) -> None:
    """A safety net for every domain: a new HTML form route without `CsrfProtected` fails here.
    Exempt, because no cookie authorizes them: the REST API (token auth), the hooks' internal
    channel (HMAC token), signed storage transfers, Git LFS transfers (signed URLs), the runner
    protocol (runner secrets) and the OAuth provider's client-authenticated endpoints."""
    routes = _state_changing_routes(client.app.routes)
    client_authenticated = {
        "/login/oauth/access_token",
        "/login/oauth/revoke",
    }
    html_routes = [
        (path, protected)
        for path, protected in routes
        if not path.startswith(("/api/", "/internal/", "/-/storage/", "/-/runner/"))
        and "/info/lfs/" not in path
        and path not in client_authenticated
    ]
    assert ("/logout", True) in html_routes
    assert ("/settings/keys", True) in html_routes
    assert [path for path, protected in html_routes if not protected] == []
