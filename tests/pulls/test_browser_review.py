"""A pull request's life in a real browser: Chromium driven by Playwright against the live
server. Alice opens a pull request with the form, Bob comments on a diff line in the files tab
(the htmx form) and approves, Alice merges with the merge button.

Runs once, on SQLite (the same flows run on every engine in the TestClient tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright
from tests.browser import database as database  # SQLite only, module scope: see there
from tests.browser import database_url as database_url
from tests.browser import launch, shoot
from tests.conftest import PASSWORD, LiveServer, auth_header
from tests.pulls.conftest import commit_on
from tests.repos.git_helpers import commit_files, create_repo

from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import store
from opencodehub.repos.models import Collaborator

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _signed_in(browser: Browser, base: str, username: str, problems: list[str]) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"{username} console: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"{username} page error: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.goto(f"{base}/login")
    page.fill("#field-login", username)
    page.fill("#field-password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(f"{base}/login")
    return page


def test_open_review_and_merge_in_chromium(
    live_server: LiveServer,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    repo = create_repo(db, settings, alice, "project")
    commit_files(settings, repo, {"README.md": b"# project\n", "app.py": b"a = 1\nb = 2\n"})
    commit_on(settings, repo, {"app.py": b"a = 1\nb = 3\n"}, branch="feature")
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repo.id, user_id=bob.id, permission=Permission.WRITE)
        )
    git_repo = store.open_repository(settings, repo.id)
    main_before = str(git_repo.references["refs/heads/main"].target)
    base = live_server.url
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            # Alice opens the pull request with the form.
            author = _signed_in(browser, base, "alice", problems)
            author.goto(f"{base}/alice/project/pull/new?head=feature")
            expect(author.locator("#pull-base")).to_have_value("main")
            author.fill("#pull-title", "Bump b")
            author.fill("#pull-body", "b should be **3**.")
            author.get_by_role("button", name="Create pull request").click()
            expect(author).to_have_url(f"{base}/alice/project/pull/1")
            expect(author.get_by_test_id("pull-title")).to_contain_text("Bump b")
            expect(author.get_by_test_id("review-decision")).to_have_count(0)

            # Bob comments on the changed line in the files tab, then approves.
            reviewer = _signed_in(browser, base, "bob", problems)
            reviewer.goto(f"{base}/alice/project/pull/1/files")
            reviewer.locator('button.review-add[hx-get*="line=2&side=RIGHT"]').click()
            form = reviewer.get_by_test_id("review-comment-form")
            form.locator("textarea").fill("Why three?")
            form.get_by_role("button", name="Add single comment").click()
            thread = reviewer.get_by_test_id("review-thread")
            expect(thread).to_contain_text("Why three?")
            expect(thread.locator("xpath=ancestor::tr[1]")).to_have_class(
                re.compile(r"\breview-row\b")
            )
            shoot(reviewer, "pulls-01-line-comment")
            submit = reviewer.get_by_test_id("review-submit")
            submit.locator("textarea").fill("Looks right.")
            submit.get_by_label("Approve").check()
            submit.get_by_role("button", name="Submit review").click()
            expect(reviewer).to_have_url(f"{base}/alice/project/pull/1")
            expect(reviewer.get_by_test_id("review-decision")).to_contain_text("Approved")
            timeline = reviewer.get_by_test_id("timeline-review")
            expect(timeline.and_(reviewer.locator("[data-state=COMMENTED]"))).to_contain_text(
                "Why three?"
            )
            expect(timeline.and_(reviewer.locator("[data-state=APPROVED]"))).to_contain_text(
                "Looks right."
            )

            # Alice sees the approval and merges.
            author.reload()
            expect(author.locator("[data-state=APPROVED]")).to_contain_text("approved")
            shoot(author, "pulls-02-conversation")
            author.get_by_role("button", name="Merge pull request").click()
            expect(author.get_by_test_id("pull-state")).to_have_text("Merged")
            shoot(author, "pulls-03-merged")
        finally:
            browser.close()
    assert problems == []

    pull = httpx.get(
        f"{base}/api/v3/repos/alice/project/pulls/1",
        headers=auth_header(make_token(alice)),
        timeout=30,
    ).json()
    assert pull["merged"] is True and pull["state"] == "closed"
    main_after = str(git_repo.references["refs/heads/main"].target)
    assert main_after != main_before and main_after == pull["merge_commit_sha"]
    merged = git_repo[main_after]
    assert str(merged.parent_ids[0]) == main_before
    assert git_repo.revparse_single(f"{main_after}:app.py").data == b"a = 1\nb = 3\n"
