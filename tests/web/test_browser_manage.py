"""Repository management in a real browser: Chromium driven by Playwright against the live
server. Signs up, creates a repository with the form, renames it in its settings, and visits
the explore page and the profile.

Runs once, on SQLite (the form flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Error, expect, sync_playwright

from tests.browser import database as database  # SQLite only, module scope: see there
from tests.browser import database_url as database_url
from tests.browser import launch, shoot, take_expected
from tests.conftest import PASSWORD, LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_create_rename_explore_profile_in_chromium(live_server: LiveServer) -> None:
    problems: list[str] = []
    base = live_server.url
    with sync_playwright() as playwright:
        browser = launch(playwright)
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
            shoot(page, "manage-01-dashboard-empty")

            # The new-repository form, first with a bad name, then for real.
            page.locator("details.user-menu > summary").click()
            page.get_by_role("menuitem", name="New repository").click()
            expect(page).to_have_url(f"{base}/new")
            page.fill("#field-name", "bad name..")
            page.fill("#field-description", "A compiler for the masses")
            page.get_by_role("button", name="Create repository").click()
            expect(page.locator("#error-name")).to_contain_text("may only contain")
            take_expected(problems, 422)
            expect(page.locator("#field-description")).to_have_value("A compiler for the masses")
            shoot(page, "manage-02-new-repository-error")
            page.fill("#field-name", "compiler")
            page.check("input[name=auto_init]")
            page.select_option("#field-gitignore_template", "C")
            page.select_option("#field-license_template", "mit")
            shoot(page, "manage-03-new-repository")
            page.get_by_role("button", name="Create repository").click()
            expect(page).to_have_url(f"{base}/grace/compiler")
            expect(page.locator(".flashes")).to_contain_text("grace/compiler was created")
            shoot(page, "manage-04-repository-home")

            # Settings: rename; the old address then redirects to the new one.
            page.goto(f"{base}/grace/compiler/settings")
            expect(page.locator("#field-name")).to_have_value("compiler")
            page.fill("#field-name", "cc")
            page.fill("#field-topics", "c compilers")
            page.get_by_role("button", name="Save changes").click()
            expect(page).to_have_url(f"{base}/grace/cc/settings")
            expect(page.locator(".flashes")).to_contain_text("Repository settings saved.")
            shoot(page, "manage-05-settings")
            page.goto(f"{base}/grace/compiler/settings")
            expect(page).to_have_url(f"{base}/grace/cc/settings")

            # A wrong typed confirmation deletes nothing.
            page.fill("#field-delete-confirm", "grace/compiler")
            page.get_by_role("button", name="Delete this repository").click()
            expect(page.locator("[data-testid=delete-section] .field-error")).to_contain_text(
                "type grace/cc exactly to confirm"
            )
            take_expected(problems, 422)
            shoot(page, "manage-06-delete-refused")

            page.goto(f"{base}/grace/cc/settings/access")
            shoot(page, "manage-07-access")

            # Explore and the profile list it, with its topics.
            page.goto(f"{base}/")
            page.get_by_role("link", name="Explore", exact=True).click()
            expect(page.get_by_test_id("repo-row")).to_contain_text("grace/cc")
            expect(page.get_by_test_id("repo-row")).to_contain_text("compilers")
            page.fill("#explore-q", "nothing-like-this")
            page.get_by_role("button", name="Search").click()
            expect(page.get_by_test_id("explore-count")).to_contain_text("0 repositories")
            page.goto(f"{base}/explore")
            shoot(page, "manage-08-explore")

            page.locator("details.user-menu > summary").click()
            page.get_by_role("menuitem", name="Your profile").click()
            expect(page).to_have_url(f"{base}/grace")
            expect(page.get_by_test_id("repo-row")).to_contain_text("cc")
            shoot(page, "manage-09-profile")

            page.goto(f"{base}/")
            expect(page.get_by_test_id("dashboard-repositories")).to_contain_text("grace/cc")
            shoot(page, "manage-10-dashboard")

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
                shoot(phone_page, name)
                assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390, path
            phone.close()
            context.close()
        finally:
            browser.close()
    assert problems == []
