"""Pull request runs (service level, every database engine): `pull_request` on the test
merge `refs/pull/{n}/merge` (none when the pull request conflicts), and `pull_request_target`
in the base, with secrets even for a fork, on the base's workflow file."""

from __future__ import annotations

from typing import Any

import pygit2
from sqlalchemy import update

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.actions import runners, service
from opencodehub.actions.models import Runner
from opencodehub.pulls import jobs as pull_jobs
from opencodehub.pulls import service as pulls
from opencodehub.pulls.models import PullRequest
from opencodehub.repos import statuses, store
from opencodehub.repos.models import Repository
from opencodehub.runner.jobspec import JobSpec
from tests.actions.conftest import Project
from tests.repos.git_helpers import commit_files, create_repo

TARGET = """
name: Target
on:
  pull_request_target:
    types: [opened, synchronize]
    branches: [main]
permissions:
  contents: write
jobs:
  label:
    runs-on: ubuntu-latest
    steps:
      - run: echo "from base ${{ secrets.TOKEN }}"
"""
PLAIN = """
name: PR
on: pull_request
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - run: echo check
"""


def _open(project: Project, files: dict[str, bytes], base_files: dict[str, bytes]) -> dict:
    base = commit_files(project.settings, project.repo, base_files, message="base")
    commit_files(
        project.settings, project.repo, files, branch="topic", message="topic", parents=[base]
    )
    with project.db.session() as session:
        owner = session.get(User, project.owner.id)
        repo = session.get(Repository, project.repo.id)
        assert owner is not None and repo is not None
        actor = Actor(user=owner, method="password")
        service.set_secret(session, project.settings, actor, repo, "TOKEN", "hunter2")
        pull = pulls.create_pull(
            session, project.settings, actor, repo, title="t", head="topic", base="main"
        )
        return {
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


def _handle(project: Project, payload: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    with project.db.session() as session:
        return [
            (run.event, run.head_sha, run.head_ref, run.id)
            for run in service.handle_pull_request(session, project.settings, payload)
        ]


def _spec(project: Project) -> JobSpec:
    with project.db.session() as session:
        runner, _ = runners.register_runner(
            session, project.registration_token(), "r", ["ubuntu-latest"]
        )
        runner = session.get(Runner, runner.id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None
        return service.start_job(session, project.settings, job)


def _git(project: Project) -> pygit2.Repository:
    return store.open_repository(project.settings, project.repo.id)


def test_pull_request_runs_on_the_test_merge_commit(project: Project) -> None:
    payload = _open(
        project,
        {".github/workflows/pr.yml": PLAIN.encode(), "topic.txt": b"t"},
        {"README": b"x"},
    )
    # The base moves on after the pull request was opened: the merge is with its tip.
    tip = commit_files(project.settings, project.repo, {"later.txt": b"l"}, message="later")
    [(event, sha, ref, _run_id)] = _handle(project, payload)
    assert (event, ref) == ("pull_request", f"refs/pull/{payload['number']}/merge")
    git = _git(project)
    merge = git[sha].peel(pygit2.Commit)
    assert [str(p) for p in merge.parent_ids] == [tip, payload["head_sha"]]
    assert {e.name for e in merge.tree} >= {"README", "later.txt", "topic.txt", ".github"}
    assert str(git.references[ref].target) == sha
    spec = _spec(project)
    assert (spec.sha, spec.ref) == (sha, ref)
    assert spec.contexts.github["sha"] == sha
    assert spec.contexts.github["event"]["pull_request"]["head"]["sha"] == payload["head_sha"]
    assert spec.contexts.github["event"]["pull_request"]["base"]["sha"] == tip
    # The job's commit status is on the head, where reviews and branch protection look.
    with project.db.session() as session:
        repo = session.get(Repository, project.repo.id)
        assert repo is not None
        on_head = statuses.latest_by_context(session, repo, payload["head_sha"])
        assert [(s.context, s.state.value) for s in on_head] == [("PR / check", "pending")]
        assert statuses.latest_by_context(session, repo, sha) == []

    # The base moves again: the pull requests job moves the merge ref with it.
    newer = commit_files(project.settings, project.repo, {"more.txt": b"m"}, message="more")
    with project.db.session() as session:
        pull = session.get(PullRequest, payload["pull_request_id"])
        assert pull is not None
        moved = pull_jobs.refresh_test_merge(project.settings, pull)
    assert moved is not None and moved != sha
    assert str(git.references[ref].target) == moved
    assert str(git[moved].peel(pygit2.Commit).parent_ids[0]) == newer


def test_a_conflicting_pull_request_gets_no_pull_request_run(project: Project) -> None:
    payload = _open(
        project,
        {".github/workflows/pr.yml": PLAIN.encode(), "file.txt": b"head side\n"},
        {"file.txt": b"original\n"},
    )
    commit_files(project.settings, project.repo, {"file.txt": b"base side\n"}, message="clash")
    assert _handle(project, payload) == []
    assert _git(project).references.get(f"refs/pull/{payload['number']}/merge") is None


def test_pull_request_target_runs_the_bases_workflow_with_secrets_for_a_fork(
    project: Project,
) -> None:
    payload = _open(
        project,
        # The head changes the workflow to leak the secret and conflicts with the base.
        {
            ".github/workflows/target.yml": TARGET.replace("from base", "stolen").encode(),
            "file.txt": b"head\n",
        },
        {".github/workflows/target.yml": TARGET.encode(), "file.txt": b"orig\n"},
    )
    tip = commit_files(project.settings, project.repo, {"file.txt": b"base\n"}, message="c")
    fork = create_repo(project.db, project.settings, project.owner, "fork")
    with project.db.session() as session:
        session.execute(update(PullRequest).values(head_repository_id=fork.id))
    runs = _handle(project, payload)
    # No pull_request run (it conflicts, and the workflow has none); one pull_request_target.
    assert [(event, sha, ref) for event, sha, ref, _ in runs] == [
        ("pull_request_target", tip, "refs/heads/main")
    ]
    spec = _spec(project)
    assert spec.sha == tip and spec.ref == "refs/heads/main"
    assert spec.job["steps"][0]["run"] == 'echo "from base ${{ secrets.TOKEN }}"'
    assert spec.contexts.secrets["TOKEN"] == "hunter2"
    assert spec.contexts.github["event_name"] == "pull_request_target"
    assert spec.contexts.github["head_ref"] == "topic"
    assert spec.contexts.github["base_ref"] == "main"
    assert spec.contexts.github["event"]["pull_request"]["head"]["sha"] == payload["head_sha"]
    with project.db.session() as session:
        job = service.get_job(session, session.get(Repository, project.repo.id), spec.job_id)
        assert job.permissions == {"contents": "write", "metadata": "read"}
    # Its filters apply: a type it does not list, or another base branch, runs nothing.
    assert _handle(project, {**payload, "action": "reopened"}) == []
    assert _handle(project, {**payload, "action": "synchronize", "base_ref": "dev"}) == []
