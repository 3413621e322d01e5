"""Fixtures for the pull request tests: a repository with a main branch and helpers to branch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from tests.conftest import auth_header
from tests.repos.git_helpers import commit_files, create_repo

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import store
from opencodehub.repos.models import Repository


@dataclass
class World:
    owner: User
    repo: Repository
    token: str
    headers: dict[str, str]
    api: str  # /api/v3/repos/{owner}/{repo}

    def pull_url(self, number: int) -> str:
        return f"{self.api}/pulls/{number}"


@pytest.fixture
def world(
    db: Database, settings: Settings, make_user: Callable[..., User], make_token: Callable[..., str]
) -> World:
    owner = make_user("alice")
    repo = create_repo(db, settings, owner, "project")
    commit_files(settings, repo, {"README.md": b"# project\n", "src/app.py": b"a = 1\n"})
    token = make_token(owner)
    return World(owner, repo, token, auth_header(token), "/api/v3/repos/alice/project")


def open_pull(
    client: TestClient,
    world: World,
    head: str = "feature",
    base: str = "main",
    title: str = "Add feature",
    **extra: object,
) -> dict:
    response = client.post(
        f"{world.api}/pulls",
        json={"title": title, "head": head, "base": base, **extra},
        headers=world.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def commit_on(
    settings: Settings,
    repo: Repository,
    files: dict[str, bytes | None],
    *,
    branch: str,
    start: str = "main",
    **extra: object,
) -> str:
    """A commit on `branch`, which starts from `start` when it does not exist yet."""
    git = store.open_repository(settings, repo.id)
    if git.references.get(f"refs/heads/{branch}") is None and "parents" not in extra:
        extra["parents"] = [str(git.references[f"refs/heads/{start}"].target)]
    return commit_files(settings, repo, files, branch=branch, **extra)  # type: ignore[arg-type]
