"""Two-factor authentication in a real browser: Chromium driven by Playwright against the live
server. Enrols an authenticator app by reading the secret off the page, signs in with a code and
with a recovery code, then registers a security key on Chromium's virtual authenticator (CDP)
and signs in with it — the page's own WebAuthn script talking to the server.

Runs once, on SQLite (the flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from opencodehub.config import Settings
from opencodehub.db.engine import Database
from tests.accounts.security.conftest import code
from tests.browser import database as database  # SQLite only, module scope: see there
from tests.browser import database_url as database_url
from tests.browser import launch, shoot
from tests.conftest import PASSWORD, LiveServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def settings(db: Database, data_dir: Path) -> Settings:
    """Served as `localhost`: WebAuthn refuses an IP address as the relying party id."""
    port = free_port()
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=port,
        ssh_port=free_port(),
        base_url=f"http://localhost:{port}",
        _env_file=None,
    )


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#field-login", "ada")
    page.fill("#field-password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/login/two-factor")


def _sign_out(page: Page) -> None:
    page.locator("details.user-menu > summary").click()
    page.get_by_test_id("sign-out").click()
    expect(page.locator(".flashes")).to_contain_text("You have signed out.")


def test_totp_recovery_code_and_security_key_in_chromium(
    live_server: LiveServer, make_user: object, clock: list[int]
) -> None:
    make_user("ada")  # type: ignore[operator]
    base = live_server.settings.effective_base_url
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            page.goto(f"{base}/login")
            page.fill("#field-login", "ada")
            page.fill("#field-password", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/")

            # Enrol: read the secret off the page, as a person typing it into an app would.
            page.goto(f"{base}/settings/security")
            page.get_by_role("link", name="Set up").click()
            expect(page.get_by_test_id("totp-qr").locator("svg")).to_be_visible()
            secret = page.get_by_test_id("totp-secret").inner_text()
            shoot(page, "2fa-01-setup")
            page.fill("#field-code", code(secret, clock[0]))
            page.get_by_role("button", name="Enable").click()
            codes = page.get_by_test_id("recovery-codes").inner_text().split()
            assert len(codes) == 10
            shoot(page, "2fa-02-recovery-codes")
            page.get_by_role("link", name="I have saved my recovery codes").click()
            expect(page.get_by_test_id("totp-enabled")).to_be_visible()
            _sign_out(page)

            # Sign in with a code from the app.
            _sign_in(page, base)
            shoot(page, "2fa-03-challenge")
            clock[0] += 1
            page.fill("#field-code", code(secret, clock[0]))
            page.get_by_role("button", name="Verify").click()
            expect(page).to_have_url(f"{base}/")
            _sign_out(page)

            # Sign in with a recovery code.
            _sign_in(page, base)
            page.get_by_role("link", name="Use a recovery code").click()
            page.fill("#field-recovery_code", codes[0])
            page.get_by_role("button", name="Verify").click()
            expect(page.locator(".flashes")).to_contain_text("9 left")

            # A security key on Chromium's virtual authenticator.
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "usb",
                        "hasResidentKey": False,
                        "hasUserVerification": False,
                        "isUserVerified": False,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
            page.goto(f"{base}/settings/security")
            page.fill("#key-name", "Virtual key")
            page.get_by_role("button", name="Add security key").click()
            expect(page.get_by_test_id("security-key")).to_contain_text("Virtual key")
            shoot(page, "2fa-04-security-key")
            _sign_out(page)

            _sign_in(page, base)
            page.get_by_role("button", name="Use a security key").click()
            expect(page).to_have_url(f"{base}/")
            expect(page.locator("details.user-menu > summary")).to_be_visible()
        finally:
            browser.close()
    assert not problems, problems
