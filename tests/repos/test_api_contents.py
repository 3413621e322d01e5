"""Writing files through the contents API: PUT creates or updates, DELETE removes, each as one
commit made in memory, moved onto the branch by compare-and-swap, with the push recorded."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import contents, store
from opencodehub.repos.models import PushRecord, Repository
from tests.conftest import LiveServer, auth_header
from tests.repos.git_helpers import commit_files, create_repo, git

API = "/api/v3/repos/alice/project"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def repo(db: Database, settings: Settings, alice: User) -> Repository:
    return create_repo(db, settings, alice, auto_init=True)


@pytest.fixture
def headers(make_token: Callable[..., str], alice: User) -> dict[str, str]:
    return auth_header(make_token(alice))


def tip(settings: Settings, repo: Repository, branch: str = "main") -> pygit2.Commit:
    git_repo = store.open_repository(settings, repo.id)
    commit = git_repo.references[f"refs/heads/{branch}"].peel(pygit2.Commit)
    assert isinstance(commit, pygit2.Commit)
    return commit


def blob_at(settings: Settings, repo: Repository, path: str, branch: str = "main") -> bytes:
    git_repo = store.open_repository(settings, repo.id)
    entry = tip(settings, repo, branch).tree[path]
    blob = git_repo.get(entry.id)
    assert isinstance(blob, pygit2.Blob)
    return blob.data


def put(client: TestClient, headers: dict[str, str], path: str, **body: Any) -> Any:
    return client.put(f"{API}/contents/{path}", json=body, headers=headers)


def delete(client: TestClient, headers: dict[str, str], path: str, **body: Any) -> Any:
    return client.request("DELETE", f"{API}/contents/{path}", json=body, headers=headers)


def test_create_update_delete_cycle(
    client: TestClient, db: Database, settings: Settings, repo: Repository, headers: dict[str, str]
) -> None:
    before = tip(settings, repo)
    created = put(client, headers, "docs/new file.md", message="add", content=b64(b"hello\n"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["content"]["path"] == "docs/new file.md"
    assert body["content"]["type"] == "file"
    assert body["content"]["size"] == 6
    assert "content" not in body["content"]
    assert body["commit"]["message"] == "add"
    assert body["commit"]["parents"][0]["sha"] == str(before.id)
    assert body["commit"]["author"]["name"] == "alice"
    assert body["commit"]["author"]["email"] == "alice@example.com"
    assert body["commit"]["committer"]["email"] == "alice@example.com"
    after_create = tip(settings, repo)
    assert str(after_create.id) == body["commit"]["sha"]
    assert blob_at(settings, repo, "docs/new file.md") == b"hello\n"
    assert blob_at(settings, repo, "README.md")  # the rest of the tree is kept

    blob_sha = body["content"]["sha"]
    updated = put(
        client,
        headers,
        "docs/new file.md",
        message="update",
        content=b64(b"hello again\n"),
        sha=blob_sha,
        author={"name": "Carol", "email": "carol@example.com", "date": "2020-01-02T03:04:05Z"},
    )
    assert updated.status_code == 200, updated.text
    commit = updated.json()["commit"]
    assert commit["author"] == {
        "name": "Carol",
        "email": "carol@example.com",
        "date": "2020-01-02T03:04:05Z",
    }
    assert commit["committer"]["name"] == "alice"
    assert blob_at(settings, repo, "docs/new file.md") == b"hello again\n"

    new_sha = updated.json()["content"]["sha"]
    removed = delete(client, headers, "docs/new file.md", message="remove", sha=new_sha)
    assert removed.status_code == 200, removed.text
    assert removed.json()["content"] is None
    final = tip(settings, repo)
    assert str(final.id) == removed.json()["commit"]["sha"]
    assert "docs" not in final.tree  # the emptied directory is gone too

    with db.session() as session:
        records = session.scalars(
            select(PushRecord).where(PushRecord.repository_id == repo.id).order_by(PushRecord.id)
        ).all()
        assert [(record.ref, record.old_sha, record.new_sha) for record in records] == [
            ("refs/heads/main", str(before.id), str(after_create.id)),
            ("refs/heads/main", str(after_create.id), commit["sha"]),
            ("refs/heads/main", commit["sha"], str(final.id)),
        ]
        assert all(record.pusher_id is not None for record in records)


def test_sha_rules(
    client: TestClient, settings: Settings, repo: Repository, headers: dict[str, str]
) -> None:
    readme_sha = str(tip(settings, repo).tree["README.md"].id)
    missing = put(client, headers, "README.md", message="m", content=b64(b"x"))
    assert missing.status_code == 422
    assert missing.json()["message"] == 'Invalid request.\n\n"sha" wasn\'t supplied.'
    wrong = put(client, headers, "README.md", message="m", content=b64(b"x"), sha="0" * 40)
    assert wrong.status_code == 409
    assert wrong.json()["message"] == f"README.md does not match {'0' * 40}"
    stale = put(client, headers, "nothing-here.txt", message="m", content=b64(b"x"), sha=readme_sha)
    assert stale.status_code == 409
    no_sha_delete = delete(client, headers, "README.md", message="m")
    assert no_sha_delete.status_code == 422
    wrong_delete = delete(client, headers, "README.md", message="m", sha="1" * 40)
    assert wrong_delete.status_code == 409
    gone = delete(client, headers, "missing.txt", message="m", sha=readme_sha)
    assert gone.status_code == 404
    assert blob_at(settings, repo, "README.md").startswith(b"# project")


def test_branches(
    client: TestClient, settings: Settings, repo: Repository, headers: dict[str, str]
) -> None:
    commit_files(
        settings,
        repo,
        {"dev.txt": b"dev\n"},
        branch="team/dev",
        parents=[str(tip(settings, repo).id)],
    )
    response = put(client, headers, "x.txt", message="m", content=b64(b"x"), branch="team/dev")
    assert response.status_code == 201
    assert blob_at(settings, repo, "x.txt", "team/dev") == b"x"
    assert "x.txt" not in tip(settings, repo).tree
    unknown = put(client, headers, "x.txt", message="m", content=b64(b"x"), branch="nope")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Branch nope not found"
    for bad in ("-x", "a..b", "x\x00", "a" * 5000, "HEAD@{1}"):
        response = put(client, headers, "y.txt", message="m", content=b64(b"y"), branch=bad)
        assert response.status_code in (404, 422), bad


@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/escape.txt",
        "a/%2e%2e/%2e%2e/escape.txt",
        ".git/config",
        "sub/.GIT/hooks/pre-receive",
        "README.md/inside",
        "a//b",
        "a%00b",
        "x" * 5000,
        "tab%09name",
    ],
)
def test_bad_paths(
    client: TestClient, settings: Settings, repo: Repository, headers: dict[str, str], path: str
) -> None:
    before = tip(settings, repo).id
    response = put(client, headers, path, message="m", content=b64(b"x"))
    assert response.status_code in (404, 422), response.text
    assert tip(settings, repo).id == before  # nothing half-written


def test_directory_and_bad_bodies(
    client: TestClient, settings: Settings, repo: Repository, headers: dict[str, str]
) -> None:
    commit_files(settings, repo, {"dir/a.txt": b"a"})
    before = tip(settings, repo).id
    directory = put(client, headers, "dir", message="m", content=b64(b"x"))
    assert directory.status_code == 422
    not_base64 = put(client, headers, "c.txt", message="m", content="***not base64***")
    assert not_base64.status_code == 422
    assert not_base64.json()["errors"][0]["field"] == "content"
    no_message = client.put(f"{API}/contents/c.txt", json={"content": b64(b"x")}, headers=headers)
    assert no_message.status_code == 422
    nul_message = put(client, headers, "c.txt", message="a\x00b", content=b64(b"x"))
    assert nul_message.status_code == 422
    bad_author = put(
        client,
        headers,
        "c.txt",
        message="m",
        content=b64(b"x"),
        author={"name": "Eve <evil>", "email": "e@example.com"},
    )
    assert bad_author.status_code == 422
    not_json = client.put(
        f"{API}/contents/c.txt",
        content=b"{",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    assert tip(settings, repo).id == before


def test_binary_content_round_trips(
    client: TestClient, settings: Settings, repo: Repository, headers: dict[str, str]
) -> None:
    data = bytes(range(256)) * 20
    response = put(client, headers, "bin/blob.dat", message="binary", content=b64(data))
    assert response.status_code == 201
    assert blob_at(settings, repo, "bin/blob.dat") == data
    got = client.get(f"{API}/contents/bin/blob.dat", headers=headers).json()
    assert base64.b64decode(got["content"]) == data


def test_executable_bit_is_kept(
    client: TestClient, settings: Settings, repo: Repository, headers: dict[str, str]
) -> None:
    commit_files(
        settings, repo, {"run.sh": (pygit2.enums.FileMode.BLOB_EXECUTABLE, b"#!/bin/sh\n")}
    )
    sha = str(tip(settings, repo).tree["run.sh"].id)
    response = put(
        client, headers, "run.sh", message="m", content=b64(b"#!/bin/sh\nexit 0\n"), sha=sha
    )
    assert response.status_code == 200
    assert tip(settings, repo).tree["run.sh"].filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE


def test_permissions_and_archived(
    client: TestClient,
    db: Database,
    settings: Settings,
    repo: Repository,
    headers: dict[str, str],
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    anonymous = client.put(f"{API}/contents/a.txt", json={"message": "m", "content": b64(b"a")})
    assert anonymous.status_code in (401, 403, 404)
    mallory = auth_header(make_token(make_user("mallory")))
    other = put(client, mallory, "a.txt", message="m", content=b64(b"a"))
    assert other.status_code == 403
    read_only_token = auth_header(make_token(db_user(db, "alice"), scopes=[]))
    no_scope = put(client, read_only_token, "a.txt", message="m", content=b64(b"a"))
    assert no_scope.status_code in (403, 404)
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        record.is_archived = True
    archived = put(client, headers, "a.txt", message="m", content=b64(b"a"))
    assert archived.status_code == 403
    assert "archived" in archived.json()["message"]
    assert "a.txt" not in tip(settings, repo).tree


def db_user(db: Database, name: str) -> User:
    with db.session() as session:
        user = session.scalar(select(User).where(User.lower_username == name))
        assert user is not None
        session.expunge(user)
        return user


def test_first_file_in_an_empty_repository(
    client: TestClient, db: Database, settings: Settings, alice: User, headers: dict[str, str]
) -> None:
    create_repo(db, settings, alice, "blank")
    url = "/api/v3/repos/alice/blank/contents/hello.txt"
    response = client.put(url, json={"message": "first", "content": b64(b"hi\n")}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["commit"]["parents"] == []
    with db.session() as session:
        record = session.scalar(select(Repository).where(Repository.lower_name == "blank"))
        assert record is not None and record.is_empty is False
    assert client.get(url).json()["content"] == b64(b"hi\n") + "\n"


def test_concurrent_push_is_never_lost(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A push landing between our read of the tip and our ref update: the compare-and-swap
    fails, the commit is rebuilt on the pushed tip, and both changes survive."""
    real_cas = contents._compare_and_swap
    raced: list[str] = []

    def racing_cas(
        settings_: Settings, git_repo: pygit2.Repository, ref: str, new: str, old: str | None
    ) -> bool:
        if not raced:
            raced.append(commit_files(settings, repo, {"pushed.txt": b"pushed\n"}, message="push"))
        return real_cas(settings_, git_repo, ref, new, old)

    monkeypatch.setattr(contents, "_compare_and_swap", racing_cas)
    response = put(client, headers, "api.txt", message="api", content=b64(b"api\n"))
    assert response.status_code == 201, response.text
    head = tip(settings, repo)
    assert str(head.id) == response.json()["commit"]["sha"]
    assert [str(parent) for parent in head.parent_ids] == raced
    assert blob_at(settings, repo, "pushed.txt") == b"pushed\n"
    assert blob_at(settings, repo, "api.txt") == b"api\n"


def test_concurrent_change_to_the_same_file_conflicts(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_cas = contents._compare_and_swap
    readme_sha = str(tip(settings, repo).tree["README.md"].id)
    raced: list[str] = []

    def racing_cas(
        settings_: Settings, git_repo: pygit2.Repository, ref: str, new: str, old: str | None
    ) -> bool:
        if not raced:
            raced.append(commit_files(settings, repo, {"README.md": b"theirs\n"}))
        return real_cas(settings_, git_repo, ref, new, old)

    monkeypatch.setattr(contents, "_compare_and_swap", racing_cas)
    response = put(
        client, headers, "README.md", message="m", content=b64(b"ours\n"), sha=readme_sha
    )
    assert response.status_code == 409
    assert blob_at(settings, repo, "README.md") == b"theirs\n"
    assert str(tip(settings, repo).id) == raced[0]


def test_real_git_sees_api_commits(
    client: TestClient,
    settings: Settings,
    repo: Repository,
    headers: dict[str, str],
    tmp_path: Path,
) -> None:
    """Push with the real git client over the filesystem, then write through the API on top,
    then fetch it back: the histories agree."""
    repo_path = store.repository_path(settings, repo.id)
    work = tmp_path / "work"
    git(settings, repo_path, "clone", "--quiet", str(repo_path), str(work))
    (work / "from-git.txt").write_text("git\n")
    git(settings, repo_path, "add", "from-git.txt", cwd=work)
    git(settings, repo_path, "commit", "--quiet", "-m", "from git", cwd=work)
    git(settings, repo_path, "push", "--quiet", "origin", "main", cwd=work)
    response = put(client, headers, "from-api.txt", message="from api", content=b64(b"api\n"))
    assert response.status_code == 201
    git(settings, repo_path, "pull", "--quiet", "--ff-only", "origin", "main", cwd=work)
    assert (work / "from-api.txt").read_text() == "api\n"
    log = git(settings, repo_path, "log", "--format=%s", cwd=work).split("\n")
    assert log[:3] == ["from api", "from git", "Initial commit"]
    fsck = git(settings, repo_path, "--git-dir", str(repo_path), "fsck", "--strict")
    assert "error" not in fsck


@pytest.mark.slow
def test_pygithub_round_trip(
    live_server: LiveServer,
    db: Database,
    settings: Settings,
    repo: Repository,
    make_token: Callable[..., str],
    alice: User,
) -> None:
    """GitHub's own Python client, unchanged, against the live server."""
    from github import Auth, Github, GithubException

    gh = Github(base_url=f"{live_server.url}/api/v3", auth=Auth.Token(make_token(alice)))
    project = gh.get_repo("alice/project")
    created = project.create_file("notes/todo.md", "add todo", "- one\n", branch="main")
    assert created["commit"].sha == str(tip(settings, repo).id)
    file = project.get_contents("notes/todo.md")
    assert not isinstance(file, list)
    assert file.decoded_content == b"- one\n"
    updated = project.update_file(file.path, "update todo", "- two\n", file.sha)
    assert updated["content"].sha != file.sha
    with pytest.raises(GithubException) as conflict:
        project.update_file(file.path, "stale", "- three\n", file.sha)
    assert conflict.value.status == 409
    commits = list(project.get_commits(path="notes/todo.md"))
    assert [commit.commit.message for commit in commits] == ["update todo", "add todo"]
    assert project.get_readme().decoded_content.startswith(b"# project")
    assert project.get_branch("main").commit.sha == commits[0].sha
    assert project.get_git_ref("heads/main").object.sha == commits[0].sha
    comparison = project.compare(commits[1].sha, "main")
    assert comparison.ahead_by == 1 and comparison.status == "ahead"
    project.delete_file("notes/todo.md", "remove todo", updated["content"].sha)
    with pytest.raises(GithubException) as missing:
        project.get_contents("notes/todo.md")
    assert missing.value.status == 404
