"""Repository management in a real browser: Chromium driven by Playwright against the live
server. Signs up, creates a repository with the form, renames it in its settings, and visits
the explore page and the profile.

Runs once, on SQLite (the form flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

from collections.abc import Iterator

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
    yield f"sqlite:///{tmp_path_factory.mktemp('browser-manage') / 'och.db'}"


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    """The conftest's `database`, at module scope to follow the SQLite-only `database_url`."""
    db = Database(database_url)
    Base.metadata.create_all(db.engine)
    yield db
    db.dispose()


def _take_expected(problems: list[str], status: int) -> None:
    """Drop the one console line Chromium logs for a page we meant to answer with `status`."""
    expected = f"the server responded with a status of {status}"
    matching = [problem for problem in problems if expected in problem]
    assert len(matching) == 1, problems
    problems.remove(matching[0])


def _shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_create_rename_explore_profile_in_chromium(live_server: LiveServer) -> None:
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

            page.goto(f"{base}/signup")
            page.fill("#field-username", "grace")
            page.fill("#field-email", "grace@example.com")
            page.fill("#field-password", PASSWORD)
            page.get_by_role("button", name="Create account").click()
            expect(page.locator(".flashes")).to_contain_text("Welcome to OpenCodeHub, grace!")
            _shoot(page, "manage-01-dashboard-empty")

            # The new-repository form, first with a bad name, then for real.
            page.locator("details.user-menu > summary").click()
            page.get_by_role("menuitem", name="New repository").click()
            expect(page).to_have_url(f"{base}/new")
            page.fill("#field-name", "bad name..")
            page.fill("#field-description", "A compiler for the masses")
            page.get_by_role("button", name="Create repository").click()
            expect(page.locator("#error-name")).to_contain_text("may only contain")
            _take_expected(problems, 422)
            expect(page.locator("#field-description")).to_have_value("A compiler for the masses")
            _shoot(page, "manage-02-new-repository-error")
            page.fill("#field-name", "compiler")
            page.check("input[name=auto_init]")
            page.select_option("#field-gitignore_template", "C")
            page.select_option("#field-license_template", "mit")
            _shoot(page, "manage-03-new-repository")
            page.get_by_role("button", name="Create repository").click()
            expect(page).to_have_url(f"{base}/grace/compiler")
            expect(page.locator(".flashes")).to_contain_text("grace/compiler was created")
            _shoot(page, "manage-04-repository-home")

            # Settings: rename; the old address then redirects to the new one.
            page.goto(f"{base}/grace/compiler/settings")
            expect(page.locator("#field-name")).to_have_value("compiler")
            page.fill("#field-name", "cc")
            page.fill("#field-topics", "c compilers")
            page.get_by_role("button", name="Save changes").click()
            expect(page).to_have_url(f"{base}/grace/cc/settings")
            expect(page.locator(".flashes")).to_contain_text("Repository settings saved.")
            _shoot(page, "manage-05-settings")
            page.goto(f"{base}/grace/compiler/settings")
            expect(page).to_have_url(f"{base}/grace/cc/settings")

            # A wrong typed confirmation deletes nothing.
            page.fill("#field-delete-confirm", "grace/compiler")
            page.get_by_role("button", name="Delete this repository").click()
            expect(page.locator("[data-testid=delete-section] .field-error")).to_contain_text(
                "type grace/cc exactly to confirm"
            )
            _take_expected(problems, 422)
            _shoot(page, "manage-06-delete-refused")

            page.goto(f"{base}/grace/cc/settings/access")
            _shoot(page, "manage-07-access")

            # Explore and the profile list it, with its topics.
            page.goto(f"{base}/")
            page.get_by_role("link", name="Explore", exact=True).click()
            expect(page.get_by_test_id("repo-row")).to_contain_text("grace/cc")
            expect(page.get_by_test_id("repo-row")).to_contain_text("compilers")
            page.fill("#explore-q", "nothing-like-this")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_test_id("explore-count")).to_contain_text("0 repositories")
            page.goto(f"{base}/explore")
            _shoot(page, "manage-08-explore")

            page.locator("details.user-menu > summary").click()
            page.get_by_role("menuitem", name="Your profile").click()
            expect(page).to_have_url(f"{base}/grace")
            expect(page.get_by_test_id("repo-row")).to_contain_text("cc")
            _shoot(page, "manage-09-profile")

            page.goto(f"{base}/")
            expect(page.get_by_test_id("dashboard-repositories")).to_contain_text("grace/cc")
            _shoot(page, "manage-10-dashboard")

            # Phone width: the profile and the settings fit.
            phone = browser.new_context(viewport={"width": 390, "height": 844})
            phone.add_cookies(context.cookies())
            phone_page = phone.new_page()
            phone_page.on("console", on_console)
            phone_page.on("pageerror", on_page_error)
            for name, path in [
                ("manage-11-profile-phone", "/grace"),
                ("manage-12-settings-phone", "/grace/cc/settings"),
                ("manage-13-new-phone", "/new"),
            ]:
                phone_page.goto(f"{base}{path}")
                _shoot(phone_page, name)
                assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390, path
            phone.close()
            context.close()
        finally:
            browser.close()
    assert problems == []
