"""Pull request pages: open from the form, conversation, files with progressive loading and
viewed marks, merge from the merge box, fork and sync buttons."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from tests.pulls.conftest import World, commit_on
from tests.web.forms import csrf_from, log_in

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.repos import store


def test_open_review_files_and_merge_in_the_browser(
    client: TestClient, settings: Settings, world: World
) -> None:
    files = {f"docs/f{index:03}.txt": f"{index}\n".encode() for index in range(120)}
    commit_on(settings, world.repo, files, branch="feature", message="many files")
    log_in(client)
    form = client.get("/alice/project/pull/new?head=feature")
    assert form.status_code == 200
    created = client.post(
        "/alice/project/pulls",
        data={
            "csrf_token": csrf_from(form.text),
            "base": "main",
            "head": "feature",
            "title": "Docs",
            "body": "Some **docs**",
        },
        follow_redirects=False,
    )
    assert created.status_code == 303 and created.headers["location"] == "/alice/project/pull/1"
    page = client.get("/alice/project/pull/1")
    assert page.status_code == 200 and "<strong>docs</strong>" in page.text
    assert 'data-testid="merge-form"' in page.text

    # Files: the first 50 at once, then htmx pages until the last.
    first = client.get("/alice/project/pull/1/files")
    assert first.text.count('data-testid="pull-file"') == 50
    assert "files/page?start=50" in first.text
    second = client.get("/alice/project/pull/1/files/page?start=50")
    assert second.text.count('data-testid="pull-file"') == 50
    last = client.get("/alice/project/pull/1/files/page?start=100")
    assert last.text.count('data-testid="pull-file"') == 20
    assert "more-files" not in last.text

    marked = client.post(
        "/alice/project/pull/1/viewed",
        data={"csrf_token": csrf_from(first.text), "path": "docs/f000.txt", "viewed": "1"},
        follow_redirects=False,
    )
    assert marked.status_code == 303
    again = client.get("/alice/project/pull/1/files")
    assert again.text.count(" checked> Viewed") == 1

    merged = client.post(
        "/alice/project/pull/1/merge",
        data={"csrf_token": csrf_from(page.text), "merge_method": "squash", "delete_branch": "1"},
        follow_redirects=False,
    )
    assert merged.status_code == 303
    git = store.open_repository(settings, world.repo.id)
    assert git.references.get("refs/heads/feature") is None
    assert "docs/f119.txt" in git.get(str(git.references["refs/heads/main"].target)).tree
    assert "Merged" in client.get("/alice/project/pull/1").text
    assert "Merged" in client.get("/alice/project/pulls?state=closed").text


def test_merge_settings_and_fork_buttons(
    client: TestClient, settings: Settings, world: World, make_user: Callable[..., User]
) -> None:
    log_in(client)
    form = client.get("/alice/project/settings/merges")
    assert form.status_code == 200
    saved = client.post(
        "/alice/project/settings/merges",
        data={
            "csrf_token": csrf_from(form.text),
            "allow_merge_commit": "1",
            "allow_rebase_merge": "1",
            "delete_branch_on_merge": "1",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    commit_on(settings, world.repo, {"s.txt": b"s\n"}, branch="feature")
    client.post(
        f"{world.api}/pulls",
        json={"title": "t", "head": "feature", "base": "main"},
        headers=world.headers,
    )
    squash = client.put(
        f"{world.pull_url(1)}/merge", json={"merge_method": "squash"}, headers=world.headers
    )
    assert squash.status_code == 405
    merged = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
    assert merged.status_code == 200
    git = store.open_repository(settings, world.repo.id)
    assert git.references.get("refs/heads/feature") is None  # deleted by the setting
    # None of the methods left: refused, nothing saved.
    refused = client.post(
        "/alice/project/settings/merges",
        data={"csrf_token": csrf_from(form.text)},
        follow_redirects=False,
    )
    assert refused.status_code == 303
    assert "checked" in client.get("/alice/project/settings/merges").text

    # Bob forks from the repository home, then syncs after Alice moves on.
    make_user("bob")
    client.post("/logout", data={"csrf_token": csrf_from(form.text)})
    log_in(client, "bob")
    home = client.get("/alice/project")
    assert 'data-testid="fork-button"' in home.text
    forked = client.post(
        "/alice/project/fork", data={"csrf_token": csrf_from(home.text)}, follow_redirects=False
    )
    assert forked.status_code == 303 and forked.headers["location"] == "/bob/project"
    commit_on(settings, world.repo, {"later.txt": b"later\n"}, branch="main")
    fork_home = client.get("/bob/project")
    assert 'data-testid="sync-fork-button"' in fork_home.text
    synced = client.post(
        "/bob/project/sync-fork",
        data={"csrf_token": csrf_from(fork_home.text), "branch": "main"},
        follow_redirects=False,
    )
    assert synced.status_code == 303
    assert "later.txt" in client.get("/bob/project").text
