"""Editing files in the browser, and deleting branches: CSRF, write permission, branch
protection, and the commit that lands."""

from __future__ import annotations

from collections.abc import Callable

import pygit2
import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import store
from opencodehub.repos.models import Collaborator, ProtectedBranch, Repository
from tests.repos.git_helpers import commit_files, create_repo
from tests.web.forms import csrf_from, log_in


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user("ada")


@pytest.fixture
def repo(db: Database, settings: Settings, owner: User) -> Repository:
    repository = create_repo(db, settings, owner, "project")
    tip = commit_files(
        settings, repository, {"README.md": b"# Hi\n", "src/a.py": b"x = 1\n"}, message="init"
    )
    commit_files(settings, repository, {"b.txt": b"b\n"}, branch="topic", parents=[tip])
    return repository


def _file(settings: Settings, repo: Repository, branch: str, path: str) -> bytes | None:
    git_repo = store.open_repository(settings, repo.id)
    commit = git_repo.references[f"refs/heads/{branch}"].peel(pygit2.Commit)
    try:
        return git_repo.get(commit.tree[path].id).data
    except KeyError:
        return None


def _head_message(settings: Settings, repo: Repository, branch: str = "main") -> str:
    git_repo = store.open_repository(settings, repo.id)
    commit = git_repo.references[f"refs/heads/{branch}"].peel(pygit2.Commit)
    return commit.message


def test_create_edit_delete_a_file(
    client: TestClient, repo: Repository, settings: Settings
) -> None:
    log_in(client, "ada")
    form = client.get("/ada/project/new/main/src")
    assert form.status_code == 200
    token = csrf_from(form.text)
    created = client.post(
        "/ada/project/new/main/src",
        data={"csrf_token": token, "filename": "b.py", "content": "y = 2\r\n", "message": ""},
        follow_redirects=False,
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/ada/project/blob/main/src/b.py"
    assert _file(settings, repo, "main", "src/b.py") == b"y = 2\n"
    assert _head_message(settings, repo) == "Create src/b.py"
    git_repo = store.open_repository(settings, repo.id)
    author = git_repo.references["refs/heads/main"].peel(pygit2.Commit).author
    assert author.email == "ada@example.com"

    edit = client.get("/ada/project/edit/main/src/a.py")
    assert edit.status_code == 200 and "x = 1" in edit.text
    sha = edit.text.split('name="sha" value="')[1].split('"')[0]
    updated = client.post(
        "/ada/project/edit/main/src/a.py",
        data={"csrf_token": token, "sha": sha, "content": "x = 2\n", "message": "Bump x"},
        follow_redirects=False,
    )
    assert updated.status_code == 303
    assert _file(settings, repo, "main", "src/a.py") == b"x = 2\n"
    assert _head_message(settings, repo) == "Bump x"

    # The same stale sha again: a conflict, shown on the form, nothing committed.
    stale = client.post(
        "/ada/project/edit/main/src/a.py",
        data={"csrf_token": token, "sha": sha, "content": "x = 3\n", "message": "Again"},
    )
    assert stale.status_code == 409
    assert "does not match" in stale.text
    assert _file(settings, repo, "main", "src/a.py") == b"x = 2\n"

    delete_page = client.get("/ada/project/delete/main/src/a.py")
    blob_sha = delete_page.text.split('name="sha" value="')[1].split('"')[0]
    deleted = client.post(
        "/ada/project/delete/main/src/a.py",
        data={"csrf_token": token, "sha": blob_sha, "message": ""},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert deleted.headers["location"] == "/ada/project/tree/main/src"
    assert _file(settings, repo, "main", "src/a.py") is None


def test_edit_needs_csrf_sign_in_and_write(
    client: TestClient, repo: Repository, settings: Settings, make_user: Callable[..., User]
) -> None:
    anonymous = client.get("/ada/project/edit/main/README.md", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    log_in(client, "ada")
    no_token = client.post(
        "/ada/project/new/main", data={"filename": "x.txt", "content": "x"}, follow_redirects=False
    )
    assert no_token.status_code == 403
    assert _file(settings, repo, "main", "x.txt") is None

    make_user("bob")
    client.cookies.clear()
    log_in(client, "bob")
    assert client.get("/ada/project/edit/main/README.md").status_code == 403
    token = csrf_from(client.get("/ada/project").text)
    refused = client.post(
        "/ada/project/new/main",
        data={"csrf_token": token, "filename": "x.txt", "content": "x"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert _file(settings, repo, "main", "x.txt") is None


@pytest.mark.parametrize(
    "filename", ["../escape.txt", ".git/config", "a/../../b", "x\x00y", "-" + "y" * 300]
)
def test_bad_file_names_are_refused(
    client: TestClient, repo: Repository, settings: Settings, filename: str
) -> None:
    log_in(client, "ada")
    token = csrf_from(client.get("/ada/project/new/main").text)
    response = client.post(
        "/ada/project/new/main",
        data={"csrf_token": token, "filename": filename, "content": "x", "message": "m"},
    )
    assert response.status_code == 422
    assert "not a valid file path" in response.text


def test_tags_and_missing_refs_cannot_be_edited(client: TestClient, repo: Repository) -> None:
    log_in(client, "ada")
    assert client.get("/ada/project/edit/nope/README.md").status_code == 404
    assert client.get("/ada/project/edit/main/nope.md").status_code == 404


def test_protected_branch_refuses_browser_delete(
    client: TestClient, db: Database, repo: Repository, settings: Settings
) -> None:
    with db.session() as session:
        session.add(ProtectedBranch(repository_id=repo.id, pattern="topic"))
    log_in(client, "ada")
    token = csrf_from(client.get("/ada/project/branches").text)
    refused = client.post(
        "/ada/project/branches/delete",
        data={"csrf_token": token, "branch": "topic"},
        follow_redirects=True,
    )
    assert "cannot delete a protected branch" in refused.text
    assert _file(settings, repo, "topic", "b.txt") == b"b\n"
    default = client.post(
        "/ada/project/branches/delete",
        data={"csrf_token": token, "branch": "main"},
        follow_redirects=True,
    )
    assert "refusing to delete the default branch" in default.text


def test_delete_branch(
    client: TestClient,
    db: Database,
    repo: Repository,
    settings: Settings,
    make_user: Callable[..., User],
) -> None:
    reader = make_user("rita")
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repo.id, user_id=reader.id, permission=Permission.READ)
        )
    log_in(client, "rita")
    token = csrf_from(client.get("/ada/project/branches").text)
    forbidden = client.post(
        "/ada/project/branches/delete", data={"csrf_token": token, "branch": "topic"}
    )
    assert forbidden.status_code == 403
    client.cookies.clear()
    log_in(client, "ada")
    token = csrf_from(client.get("/ada/project/branches").text)
    deleted = client.post(
        "/ada/project/branches/delete",
        data={"csrf_token": token, "branch": "topic"},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    git_repo = store.open_repository(settings, repo.id)
    assert git_repo.references.get("refs/heads/topic") is None
    missing = client.post(
        "/ada/project/branches/delete", data={"csrf_token": token, "branch": "../../etc"}
    )
    assert missing.status_code == 404
