"""The web UI in a real browser: Chromium driven by Playwright against the live server.

Runs once, on SQLite (the form flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect, sync_playwright

from opencodehub.db.base import Base
from opencodehub.db.engine import Database
from tests.conftest import OUTPUT_DIR, PASSWORD, LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOTS = OUTPUT_DIR / "screenshots"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module runs on SQLite only (overrides the engine-parametrized fixture)."""
    yield f"sqlite:///{tmp_path_factory.mktemp('browser') / 'och.db'}"


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    """The conftest's `database`, at module scope to follow the SQLite-only `database_url`."""
    db = Database(database_url)
    Base.metadata.create_all(db.engine)
    yield db
    db.dispose()


def _take_expected(problems: list[str], status: int) -> None:
    """Drop the one console line Chromium logs for a page we meant to answer with `status`
    (a form shown again with its errors, the 404 page); anything else stays a problem."""
    expected = f"the server responded with a status of {status}"
    matching = [problem for problem in problems if expected in problem]
    assert len(matching) == 1, problems
    problems.remove(matching[0])


def _shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_up_keys_tokens_in_chromium(live_server: LiveServer, tmp_path: Path) -> None:
    key_path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ada@laptop", "-f", str(key_path)],
        check=True,
    )
    public_key = key_path.with_suffix(".pub").read_text().strip()
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]

    problems: list[str] = []
    base = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(f"console: {message.text}")

            def on_page_error(error: Error) -> None:
                problems.append(f"page error: {error}")

            page.on("console", on_console)
            page.on("pageerror", on_page_error)

            page.goto(f"{base}/")
            expect(page.get_by_role("heading", name="Your code, your server.")).to_be_visible()
            _shoot(page, "01-landing")

            # Sign up: the first account, signed in straight away.
            page.get_by_role("link", name="Sign up").first.click()
            page.fill("#field-username", "ada")
            page.fill("#field-email", "ada@example.com")
            page.fill("#field-password", "short")
            _shoot(page, "02-signup")
            page.get_by_role("button", name="Create account").click()
            expect(page.locator(".field-error")).to_contain_text("at least 8 characters")
            _take_expected(problems, 422)
            _shoot(page, "03-signup-error")
            page.fill("#field-password", PASSWORD)
            page.get_by_role("button", name="Create account").click()
            expect(page.locator(".flashes")).to_contain_text("Welcome to OpenCodeHub, ada!")
            _shoot(page, "04-dashboard")

            # Sign out through the account menu, then sign in by email.
            page.locator("details.user-menu > summary").click()
            _shoot(page, "05-user-menu")
            page.get_by_test_id("sign-out").click()
            expect(page.locator(".flashes")).to_contain_text("You have signed out.")
            page.goto(f"{base}/settings/keys")
            expect(page).to_have_url(f"{base}/login?next=/settings/keys")
            page.fill("#field-login", "ada@example.com")
            page.fill("#field-password", "wrong password")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("Incorrect username")
            _take_expected(problems, 422)
            _shoot(page, "06-login-error")
            page.fill("#field-password", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/settings/keys")

            # Add an SSH key generated by ssh-keygen; its fingerprint is shown.
            page.fill("#field-title", "Laptop")
            page.fill("#field-key", public_key)
            page.get_by_role("button", name="Add SSH key").click()
            expect(page.get_by_test_id("fingerprint")).to_have_text(fingerprint)
            _shoot(page, "07-ssh-keys")

            # Create a token: shown once, then only its last eight characters.
            page.goto(f"{base}/settings/tokens")
            page.fill("#field-note", "deploy")
            page.check("input[name=scopes][value=repo]")
            page.get_by_role("button", name="Generate token").click()
            token = page.locator("#new-token-value").inner_text().strip()
            assert problems == []
            assert token.startswith("och_")
            _shoot(page, "08-token-created")
            page.goto(f"{base}/settings/tokens")
            expect(page.get_by_test_id("token-row")).to_contain_text(token[-8:])
            assert token not in page.content()

            for name, path in [
                ("09-profile", "/settings/profile"),
                ("10-sessions", "/settings/sessions"),
                ("11-emails", "/settings/emails"),
                ("12-not-found", "/no/such/page"),
            ]:
                page.goto(f"{base}{path}")
                _shoot(page, name)
            _take_expected(problems, 404)

            page.goto(f"{base}/organizations/new")
            page.fill("#field-login", "analytical")
            page.get_by_role("button", name="Create organization").click()
            expect(page.get_by_test_id("member-row")).to_contain_text("ada")
            _shoot(page, "13-org-people")
            page.goto(f"{base}/orgs/analytical/teams")
            _shoot(page, "14-org-teams")

            # Dark theme through the toggle, remembered in a cookie.
            page.goto(f"{base}/")
            page.locator("[data-theme-toggle]").click()
            theme = page.evaluate("document.documentElement.getAttribute('data-theme')")
            assert theme in ("dark", "light")
            if theme == "light":
                page.locator("[data-theme-toggle]").click()
            page.reload()
            expect(page.locator("html")).to_have_attribute("data-theme", "dark")
            _shoot(page, "15-dashboard-dark")

            # Phone width.
            phone = browser.new_context(viewport={"width": 390, "height": 844})
            phone_page = phone.new_page()
            phone_page.on("console", on_console)
            phone_page.on("pageerror", on_page_error)
            phone_page.goto(f"{base}/")
            _shoot(phone_page, "16-landing-phone")
            phone_page.goto(f"{base}/login")
            _shoot(phone_page, "17-login-phone")
            width = phone_page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390
            phone.close()
            context.close()
        finally:
            browser.close()
    assert problems == []
