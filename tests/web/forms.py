"""Helpers for driving the HTML forms with a TestClient, as a browser would."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from httpx import Response

from tests.conftest import PASSWORD

_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF_RE.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def page_token(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return csrf_from(response.text)


def post_form(
    client: TestClient, page: str, action: str, data: dict[str, object] | None = None
) -> Response:
    """GET `page` for its CSRF token, then POST `data` to `action` without following redirects."""
    form = {"csrf_token": page_token(client, page), **(data or {})}
    return client.post(action, data=form, follow_redirects=False)


def sign_up(
    client: TestClient, username: str = "alice", email: str | None = None, password: str = PASSWORD
) -> Response:
    return post_form(
        client,
        "/signup",
        "/signup",
        {"username": username, "email": email or f"{username}@example.com", "password": password},
    )


def log_in(
    client: TestClient, login: str = "alice", password: str = PASSWORD, next_path: str = ""
) -> Response:
    data = {"login": login, "password": password}
    if next_path:
        data["next"] = next_path
    return post_form(client, "/login", "/login", data)


def log_out(client: TestClient) -> Response:
    return post_form(client, "/", "/logout")
