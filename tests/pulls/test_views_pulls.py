"""Pull request pages: open from the form, conversation, files with progressive loading and
viewed marks, merge from the merge box, fork and sync buttons."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.pulls.conftest import World, commit_on, open_pull
from tests.web.forms import csrf_from, log_in

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.pulls.models import PullRequest
from opencodehub.repos import store
from opencodehub.repos.models import Repository, Visibility


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


def test_a_private_repositorys_pull_pages_are_the_404_page_to_whoever_may_not_read_it(
    client: TestClient,
    db: Database,
    settings: Settings,
    world: World,
    make_user: Callable[..., User],
) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    with db.session() as session:
        session.execute(
            sa.update(Repository)
            .where(Repository.id == world.repo.id)
            .values(visibility=Visibility.PRIVATE)
        )
    pages = [
        "/alice/project/pulls",
        "/alice/project/pull/new",
        "/alice/project/pull/1",
        "/alice/project/pull/1.diff",
        "/alice/project/pull/1.patch",
        "/alice/project/pull/1/commits",
        "/alice/project/pull/1/files",
        "/alice/project/pull/1/files/page?start=0",
        "/alice/project/settings/merges",
    ]
    missing = client.get("/alice/no-such-repository/pulls")
    assert missing.status_code == 404

    # Anonymous: every page that does not need a sign-in is the same HTML 404 as a repository
    # that does not exist; the forms send the visitor to sign in first, before any lookup.
    for page in pages:
        response = client.get(page, follow_redirects=False)
        if page.endswith(("/pull/new", "/settings/merges")):
            assert response.status_code == 303, page
            assert response.headers["location"].startswith("/login"), page
            continue
        assert response.status_code == 404, page
        assert response.headers["content-type"].startswith("text/html"), page
    posted = client.post("/alice/project/pull/1/comment", data={"body": "hi"})
    assert posted.status_code == 200 and str(posted.url).endswith("/login")

    # Signed in without access: the same 404 for every page and form.
    make_user("mallory")
    log_in(client, "mallory")
    for page in pages:
        response = client.get(page, follow_redirects=False)
        assert response.status_code == 404, page
        assert response.headers["content-type"].startswith("text/html"), page
    token = csrf_from(client.get("/").text)
    for action in ("comment", "merge", "state", "base", "viewed"):
        response = client.post(
            f"/alice/project/pull/1/{action}",
            data={
                "csrf_token": token,
                "body": "hi",
                "action": "close",
                "base": "main",
                "path": "new.txt",
            },
            follow_redirects=False,
        )
        assert response.status_code == 404, action
    with db.session() as session:
        pull = session.scalars(sa.select(PullRequest)).one()
        assert pull.issue.state == "open" and pull.issue.comments_count == 0

    # The owner reads them all.
    log_in(client, "alice")
    for page in pages:
        assert client.get(page, follow_redirects=False).status_code == 200, page
