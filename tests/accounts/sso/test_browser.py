"""Sign in with an OpenID Connect provider in a real browser: Chromium driven by Playwright, the
live server, and panva's certified `oidc-provider`.

Runs once, on SQLite (the flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from opencodehub.accounts.sso import service as sso
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from tests.accounts.sso.conftest import OIDC_ACCOUNTS
from tests.browser import database as database  # SQLite only, module scope: see there
from tests.browser import database_url as database_url
from tests.browser import launch, shoot
from tests.conftest import LiveServer, free_port
from tests.peers.oidc import run_oidc_provider

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def settings(db: Database, data_dir: Path) -> Settings:
    """The live server's own address is the base URL the provider redirects back to."""
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=free_port(),
        ssh_port=free_port(),
        _env_file=None,
    )


def test_sign_in_with_oidc_in_chromium(live_server: LiveServer, db: Database) -> None:
    base = live_server.url
    with run_oidc_provider(
        free_port(), [f"{base}/login/sso/corp/callback"], OIDC_ACCOUNTS
    ) as provider:
        with db.session() as session:
            sso.create_source(
                session,
                live_server.settings.secret,
                name="Corp SSO",
                slug="corp",
                kind="oidc",
                client_id=provider.client_id,
                client_secret=provider.client_secret,
                discovery_url=provider.discovery_url,
            )
        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.goto(f"{base}/login?next=/settings/linked-accounts")
                shoot(page, "sso-01-login")
                page.get_by_test_id("sso-corp").click()

                # At the provider: its development login form, then the consent form.
                page.locator("input[name=login]").fill("alice")
                page.locator("input[name=password]").fill("any-password")
                shoot(page, "sso-02-provider-login")
                page.locator("button[type=submit]").click()
                page.get_by_role("button", name="Continue").click()

                # Back at OpenCodeHub: a new account, signed in, on the page asked for.
                expect(page).to_have_url(f"{base}/settings/linked-accounts")
                expect(page.locator(".flashes")).to_contain_text("Welcome to OpenCodeHub, alice!")
                expect(page.get_by_test_id("identity-row")).to_contain_text("Corp SSO")
                shoot(page, "sso-03-linked-accounts")
                whoami = page.request.get(f"{base}/api/v3/user")
                assert whoami.json()["login"] == "alice"
            finally:
                browser.close()
