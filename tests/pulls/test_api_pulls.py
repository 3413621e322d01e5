"""REST API of pull requests: GitHub's shapes, filters, merges with each method, bad input."""

from __future__ import annotations

from collections.abc import Callable

import pygit2
from fastapi.testclient import TestClient
from tests.conftest import auth_header
from tests.pulls.conftest import World, commit_on, open_pull
from tests.repos.git_helpers import commit_files

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.pulls import service
from opencodehub.pulls.models import PullRequest, RepositoryMergeSettings
from opencodehub.repos import forks, store
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository


def _tip(settings: Settings, world: World, branch: str) -> str:
    git = store.open_repository(settings, world.repo.id)
    return str(git.references[f"refs/heads/{branch}"].target)


def test_open_get_list_and_shape(client: TestClient, settings: Settings, world: World) -> None:
    head = commit_on(settings, world.repo, {"src/app.py": b"a = 2\n"}, branch="feature")
    created = open_pull(client, world, body="Fixes nothing yet", draft=True)
    assert created["number"] == 1
    assert created["state"] == "open"
    assert created["draft"] is True
    assert created["head"]["ref"] == "feature"
    assert created["head"]["sha"] == head
    assert created["head"]["label"] == "alice:feature"
    assert created["base"]["ref"] == "main"
    assert created["base"]["repo"]["full_name"] == "alice/project"
    assert created["user"]["login"] == "alice"
    assert created["commits"] == 1 and created["changed_files"] == 1
    assert created["additions"] == 1 and created["deletions"] == 1
    assert created["url"].endswith("/api/v3/repos/alice/project/pulls/1")
    assert created["html_url"].endswith("/alice/project/pull/1")

    got = client.get(world.pull_url(1), headers=world.headers).json()
    assert got["mergeable"] is True
    assert got["mergeable_state"] == "draft"
    assert got["merged"] is False

    listed = client.get(f"{world.api}/pulls", headers=world.headers)
    assert [pull["number"] for pull in listed.json()] == [1]
    assert "mergeable" not in listed.json()[0]
    assert client.get(f"{world.api}/pulls?state=closed").json() == []
    assert len(client.get(f"{world.api}/pulls?head=alice:feature").json()) == 1
    assert client.get(f"{world.api}/pulls?head=alice:other").json() == []
    assert client.get(f"{world.api}/pulls?base=other").json() == []

    # The head lives on in the base repository as refs/pull/1/head.
    git = store.open_repository(settings, world.repo.id)
    assert str(git.references["refs/pull/1/head"].target) == head


def test_files_commits_diff_and_patch(client: TestClient, settings: Settings, world: World) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature", message="one")
    commit_on(settings, world.repo, {"README.md": b"# changed\n"}, branch="feature", message="two")
    open_pull(client, world)
    files = client.get(f"{world.pull_url(1)}/files").json()
    assert {entry["filename"]: entry["status"] for entry in files} == {
        "README.md": "modified",
        "new.txt": "added",
    }
    added = next(entry for entry in files if entry["filename"] == "new.txt")
    assert added["patch"].rstrip("\n") == "@@ -0,0 +1 @@\n+hello"
    assert added["additions"] == 1 and added["changes"] == 1
    commits = client.get(f"{world.pull_url(1)}/commits").json()
    assert [c["commit"]["message"] for c in commits] == ["one", "two"]
    diff = client.get(world.pull_url(1), headers={"Accept": "application/vnd.github.diff"})
    assert diff.headers["content-type"].startswith("application/vnd.github.diff")
    assert "diff --git a/new.txt b/new.txt" in diff.text
    patch = client.get(world.pull_url(1), headers={"Accept": "application/vnd.github.v3.patch"})
    assert "Subject: [PATCH 1/2] one" in patch.text and "Subject: [PATCH 2/2] two" in patch.text


def test_files_endpoint_pages_a_huge_pull_request(
    client: TestClient, settings: Settings, world: World
) -> None:
    git = store.open_repository(settings, world.repo.id)
    main = git.references["refs/heads/main"].peel(pygit2.Commit)
    builder = git.TreeBuilder(main.tree)
    folder = git.TreeBuilder()
    blob = git.create_blob(b"x\n")
    for index in range(10_000):
        folder.insert(f"f{index:05}.txt", blob, pygit2.GIT_FILEMODE_BLOB)
    builder.insert("many", folder.write(), pygit2.GIT_FILEMODE_TREE)
    signature = pygit2.Signature("Alice", "alice@example.com", 1_700_000_000, 0)
    git.create_commit("refs/heads/huge", signature, signature, "huge", builder.write(), [main.id])
    created = open_pull(client, world, head="huge")
    assert created["changed_files"] == 10_000
    page = client.get(f"{world.pull_url(1)}/files?per_page=100&page=2")
    assert page.status_code == 200
    names = [entry["filename"] for entry in page.json()]
    assert names[0] == "many/f00100.txt" and len(names) == 100
    assert 'rel="next"' in page.headers["link"] and "page=30" in page.headers["link"]
    last = client.get(f"{world.pull_url(1)}/files?per_page=100&page=30").json()
    assert last[-1]["filename"] == "many/f02999.txt"  # GitHub lists at most 3,000 files
    assert client.get(f"{world.pull_url(1)}/files?per_page=100&page=31").json() == []


def test_merge_with_each_method(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    # Merge commit.
    commit_on(settings, world.repo, {"a.txt": b"a\n"}, branch="merge-me", message="add a")
    open_pull(client, world, head="merge-me", title="Merge me")
    result = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
    assert result.status_code == 200, result.text
    assert result.json()["merged"] is True
    assert result.json()["message"] == "Pull Request successfully merged"
    git = store.open_repository(settings, world.repo.id)
    merged = git.get(result.json()["sha"])
    assert len(merged.parents) == 2
    assert merged.message.startswith("Merge pull request #1 from alice/merge-me")
    assert _tip(settings, world, "main") == str(merged.id)
    assert client.get(f"{world.pull_url(1)}/merge").status_code == 204
    after = client.get(world.pull_url(1)).json()
    assert after["state"] == "closed" and after["merged"] is True
    assert after["merged_by"]["login"] == "alice"
    assert after["merge_commit_sha"] == str(merged.id)

    # Squash: one commit, authored by the pull request's author.
    commit_on(
        settings,
        world.repo,
        {"b.txt": b"b\n"},
        branch="squash-me",
        message="b1",
        author=("Someone", "someone@example.com"),
    )
    commit_on(settings, world.repo, {"c.txt": b"c\n"}, branch="squash-me", message="b2")
    open_pull(client, world, head="squash-me", title="Squash me")
    result = client.put(
        f"{world.pull_url(2)}/merge", json={"merge_method": "squash"}, headers=world.headers
    )
    assert result.status_code == 200, result.text
    squashed = git.get(result.json()["sha"])
    assert len(squashed.parents) == 1 and str(squashed.parents[0].id) == str(merged.id)
    assert squashed.message.startswith("Squash me (#2)")
    assert squashed.author.email == "alice@example.com"
    assert "b.txt" in squashed.tree and "c.txt" in squashed.tree

    # Rebase: the commits replayed with their authors, committed by the merger.
    commit_on(
        settings,
        world.repo,
        {"d.txt": b"d\n"},
        branch="rebase-me",
        message="d",
        author=("Dora", "dora@example.com"),
        parents=[str(merged.id)],
    )
    open_pull(client, world, head="rebase-me", title="Rebase me")
    result = client.put(
        f"{world.pull_url(3)}/merge", json={"merge_method": "rebase"}, headers=world.headers
    )
    assert result.status_code == 200, result.text
    rebased = git.get(result.json()["sha"])
    assert str(rebased.parents[0].id) == str(squashed.id)
    assert rebased.author.email == "dora@example.com"
    assert rebased.committer.email == "alice@example.com"
    assert rebased.message == "d"
    assert _tip(settings, world, "main") == str(rebased.id)


def test_bad_merges(
    client: TestClient,
    db: Database,
    settings: Settings,
    world: World,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    commit_on(settings, world.repo, {"src/app.py": b"a = 2\n"}, branch="conflict")
    commit_on(settings, world.repo, {"src/app.py": b"a = 3\n"}, branch="main")
    open_pull(client, world, head="conflict")
    got = client.get(world.pull_url(1)).json()
    assert got["mergeable"] is False and got["mergeable_state"] == "dirty"
    refused = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
    assert refused.status_code == 405
    assert refused.json()["message"] == "Pull Request is not mergeable"
    with db.session() as session:
        # The GET above answered without writing; the service lists the conflicting files.
        pull = session.query(PullRequest).one()
        service.refresh_mergeability(session, settings, pull)
        assert pull.conflicting_files == ["src/app.py"]

    head = commit_on(settings, world.repo, {"ok.txt": b"ok\n"}, branch="ok")
    open_pull(client, world, head="ok")
    stale = client.put(f"{world.pull_url(2)}/merge", json={"sha": "0" * 40}, headers=world.headers)
    assert stale.status_code == 409
    assert stale.json()["message"] == "Head branch was modified. Review and try the merge again."

    # Readers may not merge; strangers do not see a private repository's pull requests.
    reader = make_user("rita")
    client.put(
        "/api/v3/repos/alice/project/collaborators/rita",
        json={"permission": "pull"},
        headers=world.headers,
    )
    reader_headers = auth_header(make_token(reader))
    assert (
        client.put(f"{world.pull_url(2)}/merge", json={}, headers=reader_headers).status_code == 403
    )
    assert client.put(f"{world.pull_url(2)}/merge", json={}).status_code == 401

    # A method the repository does not allow.
    with db.session() as session:
        session.add(RepositoryMergeSettings(repository_id=world.repo.id, allow_squash_merge=False))
    refused = client.put(
        f"{world.pull_url(2)}/merge", json={"merge_method": "squash"}, headers=world.headers
    )
    assert refused.status_code == 405
    assert refused.json()["message"] == "Squash merges are not allowed on this repository."
    assert (
        client.put(
            f"{world.pull_url(2)}/merge", json={"merge_method": "octopus"}, headers=world.headers
        ).status_code
        == 422
    )

    # Nothing was written by the refusals.
    assert client.get(world.pull_url(2)).json()["merged"] is False
    assert client.get(world.pull_url(2)).json()["head"]["sha"] == head

    # A deleted head cannot be merged.
    git = store.open_repository(settings, world.repo.id)
    git.references.delete("refs/heads/ok")
    gone = client.put(f"{world.pull_url(2)}/merge", json={}, headers=world.headers)
    assert gone.status_code == 405
    assert client.get(world.pull_url(99)).status_code == 404


def test_base_moving_during_the_merge_fails_cleanly(
    client: TestClient, db: Database, settings: Settings, world: World, monkeypatch
) -> None:
    commit_on(settings, world.repo, {"x.txt": b"x\n"}, branch="feature")
    open_pull(client, world)
    before = _tip(settings, world, "main")
    moved: dict[str, str] = {}
    real_update = service.merge.update_ref

    def push_in_between(*args: object, **kwargs: object) -> None:
        # Another push lands on main after the merge commit was made, before the ref moves.
        moved["sha"] = commit_on(settings, world.repo, {"other.txt": b"o\n"}, branch="main")
        real_update(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service.merge, "update_ref", push_in_between)
    result = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
    assert result.status_code == 409
    assert result.json()["message"] == "Base branch was modified. Review and try the merge again."
    # The concurrent commit is kept, the pull request is still open and unmerged.
    assert _tip(settings, world, "main") == moved["sha"] != before
    got = client.get(world.pull_url(1)).json()
    assert got["state"] == "open" and got["merged"] is False
    monkeypatch.setattr(service.merge, "update_ref", real_update)
    assert client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers).status_code == (
        200
    )


def test_bad_pull_requests(
    client: TestClient,
    db: Database,
    settings: Settings,
    world: World,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    commit_on(settings, world.repo, {"y.txt": b"y\n"}, branch="feature")
    open_pull(client, world)
    duplicate = client.post(
        f"{world.api}/pulls",
        json={"title": "again", "head": "feature", "base": "main"},
        headers=world.headers,
    )
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0]["message"] == (
        "A pull request already exists for alice:feature."
    )
    cases = [
        ({"title": "x", "head": "missing", "base": "main"}, "head"),
        ({"title": "x", "head": "feature", "base": "missing"}, "base"),
        ({"title": "x", "head": "nobody:feature", "base": "main"}, "head"),
        ({"title": "x", "head": "--upload-pack=x", "base": "main"}, "head"),
    ]
    for payload, field in cases:
        response = client.post(f"{world.api}/pulls", json=payload, headers=world.headers)
        assert response.status_code == 422, payload
        assert response.json()["errors"][0]["field"] == field
    same = client.post(
        f"{world.api}/pulls",
        json={"title": "x", "head": "main", "base": "main"},
        headers=world.headers,
    )
    assert same.status_code == 422
    assert "No commits between main and alice:main" in same.json()["errors"][0]["message"]
    no_title = client.post(
        f"{world.api}/pulls", json={"head": "feature", "base": "main"}, headers=world.headers
    )
    assert no_title.status_code == 422
    # A head in a fork the caller cannot read is refused like a head that does not exist.
    bob, mallory = make_user("bob"), make_user("mallory")
    with db.session() as session:
        bob_actor = Actor(user=session.get(User, bob.id), method="password")
        fork = forks.fork_repository(
            session, settings, bob_actor, session.get(Repository, world.repo.id)
        )
        repos.update_repository(session, settings, bob_actor, fork, visibility="private")
        session.flush()
        session.expunge(fork)
    commit_files(settings, fork, {"secret.txt": b"s\n"}, branch="main", message="secret")
    for headers in (auth_header(make_token(mallory)), world.headers):
        response = client.post(
            f"{world.api}/pulls",
            json={"title": "x", "head": "bob:main", "base": "main"},
            headers=headers,
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "head"
    # Bob himself may open it; the fork's commits are copied into the base repository.
    bob_pull = client.post(
        f"{world.api}/pulls",
        json={"title": "from bob", "head": "bob:main", "base": "main"},
        headers=auth_header(make_token(bob)),
    )
    assert bob_pull.status_code == 201, bob_pull.text
    assert bob_pull.json()["head"]["repo"]["private"] is True
    # Alice sees the pull request in her repository, not Bob's private fork.
    seen_by_alice = client.get(world.pull_url(2), headers=world.headers).json()
    assert seen_by_alice["head"]["repo"] is None
    assert seen_by_alice["head"]["label"] == "bob:main"
    assert client.get(f"{world.api}/pulls?state=bogus").status_code == 422


def test_patch_close_reopen_and_change_base(
    client: TestClient, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"z.txt": b"z\n"}, branch="feature")
    commit_on(settings, world.repo, {"w.txt": b"w\n"}, branch="develop")
    open_pull(client, world)
    edited = client.patch(
        world.pull_url(1), json={"title": "New title", "body": "New body"}, headers=world.headers
    )
    assert edited.status_code == 200
    assert edited.json()["title"] == "New title" and edited.json()["body"] == "New body"
    closed = client.patch(world.pull_url(1), json={"state": "closed"}, headers=world.headers)
    assert closed.json()["state"] == "closed" and closed.json()["closed_at"]
    reopened = client.patch(world.pull_url(1), json={"state": "open"}, headers=world.headers)
    assert reopened.json()["state"] == "open"
    rebased = client.patch(world.pull_url(1), json={"base": "develop"}, headers=world.headers)
    assert rebased.status_code == 200
    assert rebased.json()["base"]["ref"] == "develop"
    bad = client.patch(world.pull_url(1), json={"base": "nope"}, headers=world.headers)
    assert bad.status_code == 422
    assert client.patch(world.pull_url(1), json={"state": "merged"}).status_code in (401, 422)


def test_merge_closes_issues_named_by_closing_keywords(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    from opencodehub.issues import service as issues
    from opencodehub.issues.models import Issue

    with db.session() as session:
        owner = session.get(User, world.owner.id)
        repository = session.get(Repository, world.repo.id)
        first = issues.create_issue_record(session, repository, owner, "Bug one", "")
        second = issues.create_issue_record(session, repository, owner, "Bug two", "")
        untouched = issues.create_issue_record(session, repository, owner, "Bug three", "")
        numbers = (first.number, second.number, untouched.number)
    commit_on(
        settings, world.repo, {"fix.txt": b"fix\n"}, branch="fix", message=f"Closes #{numbers[1]}"
    )
    created = open_pull(client, world, head="fix", body=f"Fixes #{numbers[0]}, see #{numbers[2]}")
    assert created["number"] == 4  # issues and pull requests share one sequence
    assert client.put(f"{world.pull_url(4)}/merge", json={}, headers=world.headers).status_code == (
        200
    )
    with db.session() as session:
        states = {
            issue.number: issue.state
            for issue in session.query(Issue).filter(Issue.repository_id == world.repo.id)
        }
    assert states == {1: "closed", 2: "closed", 3: "open", 4: "closed"}


def test_draft_ready_and_viewed_marks(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"a.txt": b"1\n", "b.txt": b"1\n"}, branch="feature")
    open_pull(client, world, draft=True)
    with db.session() as session:
        actor = Actor(user=session.get(User, world.owner.id), method="password")
        repository = session.get(Repository, world.repo.id)
        pull = service.get_pull(session, repository, 1)
        assert (
            client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers).json()[
                "message"
            ]
            == "Pull Request is still a draft"
        )
        service.set_draft(session, actor, repository, pull, False)
        for path in ("a.txt", "b.txt"):
            service.set_viewed(session, settings, actor, repository, pull, path, True)
        assert service.viewed_paths(session, actor, pull) == {"a.txt", "b.txt"}
    assert client.get(world.pull_url(1)).json()["draft"] is False
    # A new push changing a.txt clears its mark only.
    commit_on(settings, world.repo, {"a.txt": b"2\n"}, branch="feature")
    with db.session() as session:
        actor = Actor(user=session.get(User, world.owner.id), method="password")
        repository = session.get(Repository, world.repo.id)
        pull = service.get_pull(session, repository, 1)
        assert service.synchronize(session, settings, pull, None)
        assert service.viewed_paths(session, actor, pull) == {"b.txt"}
