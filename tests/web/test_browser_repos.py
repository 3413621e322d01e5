"""The code-browsing pages in a real browser: a repository pushed with the real git client over
HTTP, browsed, blamed and edited in Chromium, with screenshots in light and dark themes.

Runs once, on SQLite (the pages run on every engine in the TestClient tests).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, expect, sync_playwright

from opencodehub.accounts.models import User
from opencodehub.db.engine import Database
from tests.browser import database as database  # SQLite only, module scope: see there
from tests.browser import database_url as database_url
from tests.browser import launch, shoot
from tests.conftest import PASSWORD, LiveServer
from tests.git.gitutil import repo_url, run_git
from tests.repos.git_helpers import create_repo

pytestmark = [pytest.mark.slow, pytest.mark.browser]
# Parts of the pages arrive by htmx after load; on a busy CI machine that can take a while.
expect.set_options(timeout=15_000)

APP_PY = "".join(f"def function_{n}(value):\n    return value * {n}\n\n" for n in range(1, 30))
README = """# Demo project

A repository for the browser test. See [the app](src/app.py).

| feature | state |
|:--------|------:|
| tree    | done  |

- [x] push
- [ ] review

```python
print("hello")
```
"""


def _push_project(base: str, work: Path) -> None:
    home = work / "home"
    clone = work / "project"
    clone.mkdir(parents=True)
    run_git("init", "-q", cwd=clone, home=home)
    (clone / "README.md").write_text(README)
    (clone / "src").mkdir()
    (clone / "src" / "app.py").write_text(APP_PY)
    run_git("add", ".", cwd=clone, home=home)
    run_git("commit", "-q", "-m", "Initial commit", cwd=clone, home=home)
    (clone / "src" / "app.py").write_text(APP_PY.replace("value * 7", "value * 700"))
    (clone / "src" / "util.py").write_text("HELPER = True\n")
    run_git("add", ".", cwd=clone, home=home)
    run_git("commit", "-q", "-m", "Tune function_7 and add util", cwd=clone, home=home)
    run_git("push", "-q", repo_url(base, "ada", "demo", "ada"), "main", cwd=clone, home=home)


def test_browse_blame_and_edit_in_chromium(
    live_server: LiveServer,
    db: Database,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    base = live_server.url
    ada = make_user("ada")
    create_repo(db, live_server.settings, ada, "demo")
    _push_project(base, tmp_path)

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(f"console: {message.text}")

            def on_page_error(error: Error) -> None:
                problems.append(f"page error: {error}")

            page.on("console", on_console)
            page.on("pageerror", on_page_error)

            # Sign in first (editing needs it; browsing a public repository does not).
            page.goto(f"{base}/login?next=/ada/demo")
            page.fill("#field-login", "ada")
            page.fill("#field-password", PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{base}/ada/demo")

            # Repository home: the file list gets its last-commit column through htmx.
            rows = page.get_by_test_id("file-row")
            expect(rows).to_have_count(2)
            expect(page.locator("#file-list")).to_contain_text("Tune function_7 and add util")
            expect(page.get_by_test_id("readme")).to_contain_text("A repository for the browser")
            expect(page.get_by_test_id("repo-stats")).to_contain_text("2 commits")
            expect(page.get_by_test_id("repo-stats")).to_contain_text("Python")
            shoot(page, "repos-01-home")

            # Tree, then a file with a line range.
            page.get_by_role("link", name="src", exact=True).click()
            expect(page.get_by_test_id("crumb-current")).to_have_text("src")
            shoot(page, "repos-02-tree")
            page.get_by_role("link", name="app.py").click()
            expect(page.get_by_test_id("code")).to_contain_text("def function_7")
            page.locator('a[data-line="20"]').click()
            page.locator('a[data-line="24"]').click(modifiers=["Shift"])
            expect(page).to_have_url(f"{base}/ada/demo/blob/main/src/app.py#L20-L24")
            expect(page.locator("tr.line-selected")).to_have_count(5)
            shoot(page, "repos-03-blob-range")
            page.goto(f"{base}/ada/demo/blob/main/src/app.py#L7")
            expect(page.locator("tr.line-selected")).to_have_count(1)

            # History and a commit diff, unified and split.
            page.goto(f"{base}/ada/demo/commits/main")
            expect(page.get_by_test_id("commit-row")).to_have_count(2)
            shoot(page, "repos-04-commits")
            page.get_by_role("link", name="Tune function_7 and add util").first.click()
            expect(page.get_by_test_id("diff-file")).to_have_count(2)
            expect(page.locator("ins.word").first).to_have_text("700")
            shoot(page, "repos-05-commit-unified")
            page.get_by_test_id("split-toggle").click()
            expect(page.locator("table.diff-split").first).to_be_visible()
            shoot(page, "repos-06-commit-split")

            # Blame.
            page.goto(f"{base}/ada/demo/blame/main/src/app.py")
            expect(page.get_by_test_id("blame")).to_contain_text("Initial commit")
            expect(page.get_by_test_id("blame")).to_contain_text("Tune function_7")
            shoot(page, "repos-07-blame")

            # Rendered markdown and its source.
            page.goto(f"{base}/ada/demo/blob/main/README.md")
            expect(page.get_by_test_id("rendered-markdown").locator("table")).to_be_visible()
            shoot(page, "repos-08-markdown")

            # Edit a file in the browser: a commit on main by the signed-in user.
            page.goto(f"{base}/ada/demo/blob/main/src/util.py")
            page.get_by_test_id("edit-file").click()
            page.fill("#field-content", "HELPER = False\n")
            page.fill("#field-message", "Turn the helper off")
            shoot(page, "repos-09-edit")
            page.get_by_test_id("commit-changes").click()
            expect(page.locator(".flashes")).to_contain_text("Committed src/util.py.")
            expect(page.get_by_test_id("code")).to_contain_text("HELPER = False")
            page.goto(f"{base}/ada/demo/commits/main")
            expect(page.get_by_test_id("commit-row").first).to_contain_text("Turn the helper off")

            page.goto(f"{base}/ada/demo/branches")
            shoot(page, "repos-10-branches")

            # Dark theme.
            page.goto(f"{base}/ada/demo")
            page.locator("[data-theme-toggle]").click()
            if page.evaluate("document.documentElement.getAttribute('data-theme')") != "dark":
                page.locator("[data-theme-toggle]").click()
            page.reload()
            expect(page.locator("#file-list")).to_contain_text("Turn the helper off")
            shoot(page, "repos-11-home-dark")
            page.goto(f"{base}/ada/demo/blob/main/src/app.py#L5")
            shoot(page, "repos-12-blob-dark")
            commit_link = page.get_by_test_id("permalink").get_attribute("href")
            assert commit_link is not None and "/blob/" in commit_link
            page.goto(f"{base}/ada/demo/commits/main")
            page.get_by_role("link", name="Tune function_7 and add util").first.click()
            shoot(page, "repos-13-commit-dark")

            # Phone width.
            phone = browser.new_context(viewport={"width": 390, "height": 844})
            phone_page = phone.new_page()
            phone_page.on("console", on_console)
            phone_page.on("pageerror", on_page_error)
            phone_page.goto(f"{base}/ada/demo")
            expect(phone_page.locator("#file-list")).to_contain_text("src")
            shoot(phone_page, "repos-14-home-phone")
            width = phone_page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390
            phone.close()
            context.close()
        finally:
            browser.close()
    assert problems == []
