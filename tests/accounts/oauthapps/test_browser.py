"""A person authorizes an OAuth app in a real browser (Chromium driven by Playwright): signs in,
reads the consent page, approves, and lands on the app's callback on another origin, which then
exchanges the code. The callback is a small local app standing in for the third-party tool.

Runs once, on SQLite (the flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from tests.accounts.oauthapps.conftest import RegisteredApp, authorize_url
from tests.browser import database as database  # SQLite only, module scope: see there
from tests.browser import database_url as database_url
from tests.browser import launch, shoot
from tests.conftest import PASSWORD, LiveServer, free_port
from tests.peers._server import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def settings(db: Database, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=free_port(),
        ssh_port=free_port(),
        _env_file=None,
    )


def test_authorize_in_chromium(
    live_server: LiveServer,
    make_user: Callable[..., User],
    make_app: Callable[..., RegisteredApp],
) -> None:
    received: list[dict[str, str]] = []

    async def callback(request: Request) -> HTMLResponse:
        received.append(dict(request.query_params))
        return HTMLResponse("<h1>Tool: signed in</h1>")

    tool = Starlette(routes=[Route("/callback", callback)])
    make_user("alice")
    with serve_in_thread(tool) as tool_url:
        app = make_app(callback=f"{tool_url}/callback", name="Deploy Tool")
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.goto(live_server.url + authorize_url(app, scope="repo read:org"))
                page.fill("#field-login", "alice")
                page.fill("#field-password", PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                consent = page.get_by_test_id("consent")
                expect(consent).to_contain_text("Deploy Tool")
                expect(consent).to_contain_text("Full control of your repositories")
                shoot(page, "oauth-01-consent")
                page.get_by_role("button", name="Authorize Deploy Tool").click()
                expect(page.locator("h1")).to_have_text("Tool: signed in")
                page.goto(f"{live_server.url}/settings/applications")
                expect(page.get_by_test_id("authorization-row")).to_contain_text("Deploy Tool")
                shoot(page, "oauth-02-applications")
                page.goto(f"{live_server.url}/settings/applications/{app.id}")
                expect(page.get_by_test_id("client-id")).to_have_text(app.client_id)
                shoot(page, "oauth-03-app")
            finally:
                browser.close()
    assert len(received) == 1 and received[0]["state"] == "st4te"
    token = httpx.post(
        f"{live_server.url}/login/oauth/access_token",
        data={"code": received[0]["code"]},
        auth=(app.client_id, app.client_secret),
        headers={"Accept": "application/json"},
    ).json()
    assert token["scope"] == "read:org,repo"
