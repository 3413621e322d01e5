"""The layout: landing page, security headers, theme, static files, error pages, flashes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.web.security import CONTENT_SECURITY_POLICY
from tests.web.forms import log_in


def test_landing_page_for_visitors(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "Your code, your server." in response.text
    assert 'href="/login"' in response.text and 'href="/signup"' in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    # No inline scripts or styles: the CSP would block them.
    assert "<script>" not in response.text and "style=" not in response.text


def test_dashboard_for_signed_in_users(client: TestClient, make_user: Callable[..., User]) -> None:
    make_user("alice")
    log_in(client)
    page = client.get("/")
    assert 'id="dashboard-repositories"' in page.text
    assert "You are not a member of any organization yet." in page.text
    assert "Signed in as <strong>alice</strong>" in page.text


def test_static_files_and_vendored_htmx(client: TestClient) -> None:
    for path, kind in [
        ("/static/app.css", "text/css"),
        ("/static/app.js", "javascript"),
        ("/static/htmx.min.js", "javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/app.py").status_code == 404


def test_theme_cookie(client: TestClient) -> None:
    assert "data-theme" not in client.get("/").text.split("<head>")[0]
    client.cookies.set("och_theme", "dark")
    assert '<html lang="en" data-theme="dark">' in client.get("/").text
    client.cookies.set("och_theme", '"><script>alert(1)</script>')
    page = client.get("/").text
    assert "<script>alert(1)" not in page
    assert '<html lang="en">' in page


def test_error_pages_use_the_layout(client: TestClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "does not exist" in response.text
    assert 'class="site-header"' in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    response = client.get("/settings/keys/<script>")
    assert "<script>" not in response.text


def test_api_errors_stay_json(client: TestClient) -> None:
    response = client.get("/api/v3/no-such-thing")
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"
    assert "content-security-policy" not in response.headers


def test_tampered_flash_cookie_is_ignored(client: TestClient) -> None:
    client.cookies.set("och_flash", "W1sic3VjY2VzcyIsICJoYWNrZWQiXV0.bogus")
    assert "hacked" not in client.get("/").text
