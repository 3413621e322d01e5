"""`pull_request` runs: types, fork pull requests without secrets and with a read-only token,
and a title written as an expression staying data."""

from __future__ import annotations

from sqlalchemy import update

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.actions import runners, service
from opencodehub.actions.models import Runner, WorkflowJob
from opencodehub.pulls import service as pulls
from opencodehub.pulls.models import PullRequest
from opencodehub.repos.models import Repository
from tests.actions.conftest import Project
from tests.repos.git_helpers import commit_files, create_repo

WORKFLOW = """
name: PR
on:
  pull_request:
    branches: [main]
permissions:
  contents: write
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - run: echo "$TITLE"
        env:
          TITLE: ${{ github.event.pull_request.title }}
"""
TITLE = "Fix ${{ secrets.TOKEN }} `id` $(whoami)"


def _spec(project: Project) -> tuple[object, WorkflowJob]:
    with project.db.session() as session:
        runner, _ = runners.register_runner(
            session, project.registration_token(), "r", ["ubuntu-latest"]
        )
        runner = session.get(Runner, runner.id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None
        spec = service.start_job(session, project.settings, job)
        session.expunge(job)
        return spec, job


def test_pull_request_runs_and_fork_heads_get_no_secrets(project: Project) -> None:
    base = commit_files(project.settings, project.repo, {"README": b"x"}, message="base")
    commit_files(
        project.settings,
        project.repo,
        {".github/workflows/pr.yml": WORKFLOW.encode()},
        branch="topic",
        message="topic",
        parents=[base],
    )
    with project.db.session() as session:
        owner = session.get(User, project.owner.id)
        repo = session.get(Repository, project.repo.id)
        assert owner is not None and repo is not None
        actor = Actor(user=owner, method="password")
        service.set_secret(session, project.settings, actor, repo, "TOKEN", "hunter2")
        pull = pulls.create_pull(
            session, project.settings, actor, repo, title=TITLE, head="topic", base="main"
        )
        payload = {
            "action": "opened",
            "repository_id": repo.id,
            "number": pull.number,
            "pull_request_id": pull.id,
            "head_sha": pull.head_sha,
            "base_ref": "main",
            "head_ref": "topic",
            "merged": False,
            "actor_id": owner.id,
        }
    with project.db.session() as session:
        runs = service.handle_pull_request(session, project.settings, payload)
        assert [(run.event, run.head_ref, run.display_title) for run in runs] == [
            ("pull_request", f"refs/pull/{payload['number']}/merge", TITLE)
        ]
    with project.db.session() as session:
        # The same event handled twice creates nothing; a type the workflow ignores neither.
        assert service.handle_pull_request(session, project.settings, payload) == []
        closed = {**payload, "action": "closed"}
        assert service.handle_pull_request(session, project.settings, closed) == []
    spec, job = _spec(project)
    assert spec.contexts.secrets.keys() == {"TOKEN", "GITHUB_TOKEN"}
    assert spec.contexts.github["event"]["pull_request"]["title"] == TITLE
    assert job.permissions == {"contents": "write", "metadata": "read"}

    # The same pull request with its head in a fork.
    fork = create_repo(project.db, project.settings, project.owner, "fork")
    with project.db.session() as session:
        session.execute(update(PullRequest).values(head_repository_id=fork.id))
    with project.db.session() as session:
        runs = service.handle_pull_request(
            session, project.settings, {**payload, "action": "synchronize"}
        )
        assert [run.is_fork for run in runs] == [True]
    spec, job = _spec(project)
    assert spec.contexts.secrets.keys() == {"GITHUB_TOKEN"}
    assert job.permissions == {"contents": "read", "metadata": "read"}
