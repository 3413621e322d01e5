"""Fixtures for the Actions server tests: repositories with workflows, runners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.actions import queue as actions_queue
from opencodehub.actions import runners, service
from opencodehub.actions.models import WorkflowRun
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos.models import Repository
from opencodehub.runner.protocol import PREFIX
from tests.repos.git_helpers import commit_files, create_repo


@pytest.fixture(autouse=True)
def _fresh_embedded_queue() -> Iterator[None]:
    """Each test gets an empty in-process queue (it is per process, like Redis is per site)."""
    actions_queue._queues.pop("", None)
    yield
    actions_queue._queues.pop("", None)


@dataclass
class Project:
    owner: User
    repo: Repository
    settings: Settings
    db: Database

    def push(
        self, files: dict[str, Any], *, branch: str = "main", message: str = "change"
    ) -> list[int]:
        """Commit `files` on `branch` and hand the push to the Actions consumer, as the
        post-receive event would; returns the ids of the runs created."""
        with self.db.session() as session:
            repo = session.get(Repository, self.repo.id)
            assert repo is not None
            before = ""
            from opencodehub.repos import store

            git = store.open_repository(self.settings, repo.id)
            existing = git.references.get(f"refs/heads/{branch}")
            before = str(existing.target) if existing is not None else "0" * 40
        sha = commit_files(
            self.settings,
            self.repo,
            {
                path: (content.encode() if isinstance(content, str) else content)
                for path, content in files.items()
            },
            branch=branch,
            message=message,
        )
        return self.handle_push(branch, before, sha)

    def handle_push(self, branch: str, before: str, sha: str) -> list[int]:
        payload = {
            "repository_id": self.repo.id,
            "repository": f"{self.owner.username}/{self.repo.name}",
            "pusher_id": self.owner.id,
            "pusher": self.owner.username,
            "pushed_at": f"{sha}",
            "updates": [
                {
                    "ref": f"refs/heads/{branch}",
                    "before": before,
                    "after": sha,
                    "created": not before.strip("0"),
                    "deleted": False,
                    "forced": False,
                }
            ],
        }
        with self.db.session() as session:
            return [run.id for run in service.handle_push(session, self.settings, payload)]

    def run(self, run_id: int) -> WorkflowRun:
        with self.db.session() as session:
            run = session.get(WorkflowRun, run_id)
            assert run is not None
            session.expunge(run)
            return run

    def registration_token(self) -> str:
        with self.db.session() as session:
            owner = session.get(User, self.owner.id)
            repo = session.get(Repository, self.repo.id)
            _, token = runners.create_registration_token(
                session, Actor(user=owner, method="password"), repository=repo
            )
            return token


@pytest.fixture
def project(db: Database, settings: Settings, make_user: Callable[..., User]) -> Project:
    owner = make_user("octo")
    repo = create_repo(db, settings, owner, "demo")
    return Project(owner, repo, settings, db)


@dataclass
class RunnerHandle:
    id: int
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture
def register_runner(client: TestClient, project: Project) -> Callable[..., RunnerHandle]:
    def register(name: str = "r1", labels: list[str] | None = None) -> RunnerHandle:
        response = client.post(
            f"{PREFIX}/register",
            json={
                "token": project.registration_token(),
                "name": name,
                "labels": labels if labels is not None else ["ubuntu-latest"],
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return RunnerHandle(body["id"], body["secret"])

    return register


SIMPLE = """
name: CI
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo hello
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo test
"""
