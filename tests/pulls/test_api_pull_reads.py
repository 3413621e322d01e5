"""`GET /pulls/{n}`: the raw diff and patch streamed from git at any size, a stale mergeability
answered without writing the pull request (while the rest of the request's writes are kept), and
GitHub's `mergeable_state` words: clean, blocked, behind, unstable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pygit2
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.pulls.conftest import World, commit_on, open_pull

from opencodehub.accounts.models import AccessToken
from opencodehub.config import Settings
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from opencodehub.pulls import service
from opencodehub.pulls.models import PullRequest
from opencodehub.repos import browse, store

DIFF = {"Accept": "application/vnd.github.diff"}
PATCH = {"Accept": "application/vnd.github.patch"}


# Raw diff and patch ----------------------------------------------------------------------------


def test_diff_and_patch_of_a_normal_pull_request(
    client: TestClient, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature", message="one")
    commit_on(settings, world.repo, {"src/app.py": b"a = 2\n"}, branch="feature", message="two")
    open_pull(client, world)

    diff = client.get(world.pull_url(1), headers={**DIFF, **world.headers})
    assert diff.status_code == 200
    assert diff.headers["content-type"].startswith("application/vnd.github.diff")
    assert diff.text.startswith("diff --git a/new.txt b/new.txt\n")
    assert "+hello\n" in diff.text and "-a = 1\n+a = 2\n" in diff.text
    assert diff.text.count("diff --git ") == 2

    patch = client.get(world.pull_url(1), headers={**PATCH, **world.headers})
    assert patch.status_code == 200
    assert patch.headers["content-type"].startswith("application/vnd.github.patch")
    assert "Subject: [PATCH 1/2] one\n" in patch.text
    assert "Subject: [PATCH 2/2] two\n" in patch.text
    assert "From: Alice <alice@example.com>" in patch.text
    assert "\n-- \n" not in patch.text  # no git version signature

    # The web URLs the JSON's diff_url and patch_url name serve the same.
    pull = client.get(world.pull_url(1), headers=world.headers).json()
    web_diff = client.get(pull["diff_url"].removeprefix(str(client.base_url)))
    assert web_diff.status_code == 200 and web_diff.text == diff.text
    assert web_diff.headers["content-type"].startswith("text/plain")
    web_patch = client.get(pull["patch_url"].removeprefix(str(client.base_url)))
    assert web_patch.status_code == 200 and web_patch.text == patch.text


def test_diff_of_a_missing_or_hidden_pull_request(
    client: TestClient, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    assert client.get(world.pull_url(2), headers={**DIFF, **world.headers}).status_code == 404
    assert client.get("/alice/project/pull/2.diff").status_code == 404
    assert client.get("/alice/project/pull/x.diff").status_code in (404, 422)
    patched = client.patch(
        "/api/v3/repos/alice/project", json={"private": True}, headers=world.headers
    )
    assert patched.status_code == 200
    assert client.get(world.pull_url(1), headers=DIFF).status_code == 404
    assert client.get(world.pull_url(1), headers=PATCH).status_code == 404
    assert client.get("/alice/project/pull/1.diff").status_code == 404
    assert client.get("/alice/project/pull/1.patch").status_code == 404


def _oversized_head(settings: Settings, world: World) -> str:
    """A head adding 350 files and one file of 25,000 lines: beyond GitHub's 300 files and
    20,000 lines."""
    git = store.open_repository(settings, world.repo.id)
    main = git.references["refs/heads/main"].peel(pygit2.Commit)
    builder = git.TreeBuilder(main.tree)
    folder = git.TreeBuilder()
    for index in range(350):
        blob = git.create_blob(f"file {index}\n".encode())
        folder.insert(f"f{index:03}.txt", blob, pygit2.GIT_FILEMODE_BLOB)
    builder.insert("many", folder.write(), pygit2.GIT_FILEMODE_TREE)
    long_text = "".join(f"line {index}\n" for index in range(25_000)).encode()
    builder.insert("long.txt", git.create_blob(long_text), pygit2.GIT_FILEMODE_BLOB)
    signature = pygit2.Signature("Alice", "alice@example.com", 1_700_000_000, 0)
    head = git.create_commit(
        "refs/heads/huge", signature, signature, "huge", builder.write(), [main.id]
    )
    return str(head)


def test_oversized_diff_and_patch_are_streamed_whole(
    client: TestClient, settings: Settings, world: World
) -> None:
    _oversized_head(settings, world)
    open_pull(client, world, head="huge")

    with client.stream("GET", world.pull_url(1), headers={**DIFF, **world.headers}) as response:
        assert response.status_code == 200
        # Streamed as git writes it: no length known up front, nothing built in memory first.
        assert "content-length" not in response.headers
        text = response.read().decode()
    assert text.count("diff --git ") == 351
    assert text.count("\n+line ") == 25_000
    assert "+line 24999\n" in text

    patch = client.get(world.pull_url(1), headers={**PATCH, **world.headers})
    assert patch.status_code == 200
    assert patch.text.count("Subject: [PATCH] huge\n") == 1
    assert patch.text.count("\n+line ") == 25_000

    web = client.get("/alice/project/pull/1.diff")
    assert web.status_code == 200 and web.text == text


def test_stream_diff_yields_bounded_chunks(
    db: Database, client: TestClient, settings: Settings, world: World
) -> None:
    _oversized_head(settings, world)
    open_pull(client, world, head="huge")
    git = store.open_repository(settings, world.repo.id)
    with db.session() as session:
        pull = session.scalars(sa.select(PullRequest)).one()
        chunks = list(service.stream_diff(settings, git, pull))
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= browse.STREAM_CHUNK_BYTES
    assert b"".join(chunks).count(b"diff --git ") == 351


# Reads never write the pull request -------------------------------------------------------------


def test_get_keeps_token_use_and_does_not_write_the_pull_request(
    db: Database, client: TestClient, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    # The base moves (outside any push job) and the stored answer is forgotten: stale.
    commit_on(settings, world.repo, {"other.txt": b"x\n"}, branch="main")
    long_ago = utcnow() - timedelta(days=1)
    with db.session() as session:
        pull = session.scalars(sa.select(PullRequest)).one()
        pull.mergeable = None
        pull.mergeability_key = None
        pull.mergeable_state = "unknown"
        stored_base = pull.base_sha
        token = session.scalars(sa.select(AccessToken)).one()
        token.last_used_at = long_ago

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        got = client.get(world.pull_url(1), headers=world.headers)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert got.status_code == 200
    data = got.json()
    assert data["mergeable"] is True
    assert data["mergeable_state"] == "clean"
    assert data["base"]["sha"] != stored_base  # the fresh base, in the answer only

    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE PULL_REQUESTS")]
    with db.session() as session:
        pull = session.scalars(sa.select(PullRequest)).one()
        assert pull.mergeable is None and pull.mergeability_key is None
        assert pull.base_sha == stored_base
        token = session.scalars(sa.select(AccessToken)).one()
        assert token.last_used_at is not None
        assert token.last_used_at > long_ago + timedelta(hours=23)


# mergeable_state -------------------------------------------------------------------------------


def _status(client: TestClient, world: World, sha: str, context: str, state: str) -> None:
    response = client.post(
        f"{world.api}/statuses/{sha}",
        json={"state": state, "context": context},
        headers=world.headers,
    )
    assert response.status_code == 201, response.text


def _protect(client: TestClient, world: World, *, strict: bool) -> None:
    response = client.put(
        f"{world.api}/branches/main/protection",
        json={
            "required_status_checks": {"strict": strict, "contexts": ["ci"]},
            "enforce_admins": True,
            "required_pull_request_reviews": None,
            "restrictions": None,
        },
        headers=world.headers,
    )
    assert response.status_code == 200, response.text


def _state(client: TestClient, world: World) -> str:
    return client.get(world.pull_url(1), headers=world.headers).json()["mergeable_state"]


def test_mergeable_state_clean_blocked_behind_unstable(
    client: TestClient, settings: Settings, world: World
) -> None:
    head = commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    assert _state(client, world) == "clean"

    # A failing status nothing requires: mergeable, but unstable. Pending counts too.
    _status(client, world, head, "lint", "failure")
    assert _state(client, world) == "unstable"
    _status(client, world, head, "lint", "pending")
    assert _state(client, world) == "unstable"
    _status(client, world, head, "lint", "success")
    assert _state(client, world) == "clean"

    # A required check not green blocks the merge.
    _protect(client, world, strict=True)
    assert _state(client, world) == "blocked"
    _status(client, world, head, "ci", "failure")
    assert _state(client, world) == "blocked"
    _status(client, world, head, "ci", "success")
    assert _state(client, world) == "clean"

    # The base moves on: with strict checks the head is behind; without, it is clean.
    commit_on(settings, world.repo, {"other.txt": b"x\n"}, branch="main")
    assert _state(client, world) == "behind"
    assert 'data-testid="merge-behind"' in client.get("/alice/project/pull/1").text
    merge = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
    assert merge.status_code == 405
    assert merge.json()["message"] == "Head branch is out of date with the base branch."
    _protect(client, world, strict=False)
    assert _state(client, world) == "clean"

    # A failing required check outranks both: blocked, not unstable.
    _protect(client, world, strict=True)
    _status(client, world, head, "ci", "error")
    _status(client, world, head, "lint", "failure")
    assert _state(client, world) == "blocked"
    _status(client, world, head, "ci", "success")
    assert _state(client, world) == "behind"
    _protect(client, world, strict=False)
    assert _state(client, world) == "unstable"
    assert 'data-testid="merge-unstable"' in client.get("/alice/project/pull/1").text


def test_mergeable_state_dirty_and_draft_come_first(
    client: TestClient, settings: Settings, world: World
) -> None:
    head = commit_on(settings, world.repo, {"src/app.py": b"a = 2\n"}, branch="feature")
    open_pull(client, world, draft=True)
    _status(client, world, head, "lint", "failure")
    assert _state(client, world) == "draft"
    commit_on(settings, world.repo, {"src/app.py": b"a = 3\n"}, branch="main")
    assert _state(client, world) == "dirty"


def test_pull_request_pages_answer_fresh_mergeability_without_writing_it(
    db: Database, client: TestClient, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    commit_on(settings, world.repo, {"new.txt": b"conflict\n"}, branch="main")
    with db.session() as session:
        pull = session.scalars(sa.select(PullRequest)).one()
        pull.mergeable = None
        pull.mergeability_key = None
        pull.mergeable_state = "unknown"

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        pages = {
            suffix: client.get(f"/alice/project/pull/1{suffix}", headers=world.headers)
            for suffix in ("", "/commits", "/files")
        }
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    for suffix, page in pages.items():
        assert page.status_code == 200, suffix
    conversation = pages[""].text
    assert 'data-testid="merge-conflicts"' in conversation
    assert "new.txt" in conversation  # the conflicting file, from the fresh answer
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE PULL_REQUESTS")]
    with db.session() as session:
        pull = session.scalars(sa.select(PullRequest)).one()
        assert pull.mergeable is None and pull.mergeability_key is None
