"""The job token (GITHUB_TOKEN) writes through the REST API as the reserved `github-actions`
account, within the workflow's `permissions`, and nobody can sign in as that account."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import AccountKind, User
from opencodehub.actions import tokens
from opencodehub.core.errors import Forbidden
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository
from tests.actions.conftest import Project, RunnerHandle
from tests.actions.test_runner_api import _poll

WORKFLOW = """
name: Report
on: push
permissions:
{permissions}
jobs:
  report:
    runs-on: ubuntu-latest
    steps: [{{run: echo}}]
"""


def _job(
    client: TestClient, project: Project, runner: RunnerHandle, permissions: str
) -> tuple[str, str]:
    """Push a workflow with `permissions`, take its job; (token, head sha)."""
    project.push({".github/workflows/r.yml": WORKFLOW.format(permissions=permissions)})
    spec = _poll(client, runner, wait=2).json()["spec"]
    return spec["token"], spec["sha"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_job_token_posts_statuses_and_opens_issues_as_github_actions(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    runner = register_runner()
    token, sha = _job(
        client, project, runner, "  contents: write\n  statuses: write\n  issues: write"
    )
    status = client.post(
        f"/api/v3/repos/octo/demo/statuses/{sha}",
        json={"state": "success", "context": "ci/report", "description": "all good"},
        headers=_bearer(token),
    )
    assert status.status_code == 201, status.text
    assert status.json()["creator"]["login"] == "github-actions"
    assert status.json()["state"] == "success"
    combined = client.get(f"/api/v3/repos/octo/demo/commits/{sha}/status").json()
    assert "ci/report" in [item["context"] for item in combined["statuses"]]

    issue = client.post(
        "/api/v3/repos/octo/demo/issues",
        json={"title": "Nightly failed", "body": "see the run"},
        headers=_bearer(token),
    )
    assert issue.status_code == 201, issue.text
    assert issue.json()["user"]["login"] == "github-actions"
    comment = client.post(
        f"/api/v3/repos/octo/demo/issues/{issue.json()['number']}/comments",
        json={"body": "still failing"},
        headers=_bearer(token),
    )
    assert comment.status_code == 201, comment.text
    assert comment.json()["user"]["login"] == "github-actions"

    # The token acts on its own repository only, never as the account itself.
    assert client.post(
        "/api/v3/user/repos", json={"name": "mine"}, headers=_bearer(token)
    ).status_code in (401, 403, 404)
    assert client.get("/api/v3/repos/github-actions/mine").status_code == 404


def test_a_read_only_job_token_cannot_write(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    runner = register_runner()
    token, sha = _job(client, project, runner, "  contents: read")
    status = client.post(
        f"/api/v3/repos/octo/demo/statuses/{sha}",
        json={"state": "failure", "context": "ci/x"},
        headers=_bearer(token),
    )
    assert status.status_code == 403
    issue = client.post(
        "/api/v3/repos/octo/demo/issues", json={"title": "x"}, headers=_bearer(token)
    )
    assert issue.status_code in (401, 403)
    assert client.get("/api/v3/repos/octo/demo/issues").json() == []


def test_scoped_actions_follow_the_workflows_permissions(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    runner = register_runner()
    writer, _ = _job(client, project, runner, "  statuses: write")
    reader, _ = _job(client, project, runner, "  contents: read")
    with project.db.session() as session:
        repo = session.get(Repository, project.repo.id)
        assert repo is not None
        actor = tokens.actor_for_job_token(session, writer)
        assert actor is not None and actor.user is not None
        assert actor.user.username == "github-actions"
        authorize(session, actor, repo, "statuses:write")
        # statuses: write is no licence to push.
        with pytest.raises(Forbidden):
            authorize(session, actor, repo, "write")
        read_only = tokens.actor_for_job_token(session, reader)
        assert read_only is not None and read_only.user is None
        with pytest.raises(Forbidden):
            authorize(session, read_only, repo, "statuses:write")
        owner = session.get(User, project.owner.id)
        authorize(session, Actor(user=owner, method="password"), repo, "statuses:write")


def test_nobody_signs_in_as_github_actions(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    runner = register_runner()
    token, _ = _job(client, project, runner, "  issues: write")
    with project.db.session() as session:
        actor = tokens.actor_for_job_token(session, token)
        assert actor is not None and actor.user is not None
        bot = session.get(User, actor.user.id)
        assert bot is not None and bot.password_hash is None and not bot.emails
    for password in ("", "x", "github-actions"):
        basic = base64.b64encode(f"github-actions:{password}".encode()).decode()
        answer = client.get("/api/v3/user", headers={"Authorization": f"Basic {basic}"})
        assert answer.status_code == 401


def test_a_person_named_github_actions_is_never_the_tokens_author(
    client: TestClient,
    project: Project,
    register_runner: Callable[..., RunnerHandle],
) -> None:
    # The name is reserved now; an account that took it before (made here without the
    # service's name check) must still never become the tokens' author.
    with project.db.session() as session:
        session.add(
            User(
                kind=AccountKind.USER,
                username="github-actions",
                lower_username="github-actions",
                password_hash="argon2-hash-of-a-person",
            )
        )
    runner = register_runner()
    token, _ = _job(client, project, runner, "  issues: write")
    with project.db.session() as session:
        actor = tokens.actor_for_job_token(session, token)
        assert actor is not None and actor.user is None
    issue = client.post(
        "/api/v3/repos/octo/demo/issues", json={"title": "x"}, headers=_bearer(token)
    )
    assert issue.status_code == 401
