"""The Actions REST API in GitHub's shapes: runs, workflows, dispatch with typed inputs,
secrets, registration tokens; and who may see or change what."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.actions.models import ActionSecret
from opencodehub.repos.models import Visibility
from opencodehub.runner.protocol import PREFIX
from tests.actions.conftest import SIMPLE, Project, RunnerHandle
from tests.conftest import auth_header
from tests.repos.git_helpers import create_repo

API = "/api/v3/repos/octo/demo/actions"

DISPATCH = """
name: Release
on:
  workflow_dispatch:
    inputs:
      level:
        type: choice
        options: [patch, minor]
        required: true
      dry:
        type: boolean
        default: false
      count:
        type: number
        default: 1
jobs:
  go:
    runs-on: ubuntu-latest
    steps: [{run: echo}]
"""


def test_runs_jobs_and_workflows_in_githubs_shapes(client: TestClient, project: Project) -> None:
    run_id = project.push({".github/workflows/ci.yml": SIMPLE}, message="First\n\nbody")[0]
    runs = client.get(f"{API}/runs")
    assert runs.status_code == 200
    body = runs.json()
    assert body["total_count"] == 1
    run = body["workflow_runs"][0]
    assert {key: run[key] for key in ("id", "name", "path", "event", "status", "conclusion")} == {
        "id": run_id,
        "name": "CI",
        "path": ".github/workflows/ci.yml",
        "event": "push",
        "status": "queued",
        "conclusion": None,
    }
    assert run["display_title"] == "First"
    assert run["head_branch"] == "main"
    assert run["actor"]["login"] == "octo"
    assert run["url"].endswith(f"/api/v3/repos/octo/demo/actions/runs/{run_id}")
    assert run["html_url"].endswith(f"/octo/demo/actions/runs/{run_id}")
    assert run["repository"]["full_name"] == "octo/demo"
    assert client.get(f"{API}/runs/{run_id}").json() == run

    jobs = client.get(f"{API}/runs/{run_id}/jobs").json()
    assert [(j["name"], j["status"], j["labels"]) for j in jobs["jobs"]] == [
        ("build", "queued", ["ubuntu-latest"]),
        ("test", "waiting", ["ubuntu-latest"]),
    ]
    workflows = client.get(f"{API}/workflows").json()
    assert workflows["total_count"] == 1
    workflow = workflows["workflows"][0]
    assert (workflow["name"], workflow["path"], workflow["state"]) == (
        "CI",
        ".github/workflows/ci.yml",
        "active",
    )
    assert client.get(f"{API}/workflows/ci.yml").json() == workflow
    by_workflow = client.get(f"{API}/workflows/{workflow['id']}/runs").json()
    assert [r["id"] for r in by_workflow["workflow_runs"]] == [run_id]
    assert client.get(f"{API}/runs", params={"status": "completed"}).json()["total_count"] == 0
    assert client.get(f"{API}/runs", params={"status": "bogus"}).status_code == 422
    assert client.get(f"{API}/runs/999999").status_code == 404
    assert client.get(f"{API}/jobs/999999").status_code == 404
    assert client.get(f"{API}/runs/0").status_code == 422


def test_private_runs_are_not_found_for_others(
    client: TestClient,
    project: Project,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    private = create_repo(
        project.db, project.settings, project.owner, "hidden", visibility=Visibility.PRIVATE
    )
    project.repo = private
    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    stranger = auth_header(make_token(make_user("stranger")))
    for path in (
        "/runs",
        f"/runs/{run_id}",
        f"/runs/{run_id}/jobs",
        "/workflows",
        f"/jobs/{run_id}/logs",
        "/secrets",
    ):
        assert client.get(f"/api/v3/repos/octo/hidden/actions{path}").status_code == 404
        assert (
            client.get(f"/api/v3/repos/octo/hidden/actions{path}", headers=stranger).status_code
            == 404
        )
    cancel = client.post(
        f"/api/v3/repos/octo/hidden/actions/runs/{run_id}/cancel", headers=stranger
    )
    assert cancel.status_code == 404
    owner = auth_header(make_token(project.owner))
    assert (
        client.get(f"/api/v3/repos/octo/hidden/actions/runs/{run_id}", headers=owner).status_code
        == 200
    )


def test_secrets_are_write_only_and_reach_jobs_encrypted_at_rest(
    client: TestClient,
    project: Project,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
    register_runner: Callable[..., RunnerHandle],
) -> None:
    owner = auth_header(make_token(project.owner))
    put = client.put(f"{API}/secrets/deploy_key", json={"value": "s3cr3t"}, headers=owner)
    assert put.status_code == 201
    again = client.put(f"{API}/secrets/DEPLOY_KEY", json={"value": "n3w"}, headers=owner)
    assert again.status_code == 204
    listed = client.get(f"{API}/secrets", headers=owner).json()
    assert listed["total_count"] == 1
    assert set(listed["secrets"][0]) == {"name", "created_at", "updated_at"}
    assert listed["secrets"][0]["name"] == "DEPLOY_KEY"
    for bad in ("GITHUB_TOKEN", "1abc", "a-b", "x" * 300):
        answer = client.put(f"{API}/secrets/{bad}", json={"value": "v"}, headers=owner)
        assert answer.status_code == 422, bad
    reader = auth_header(make_token(make_user("reader")))
    assert client.put(f"{API}/secrets/X", json={"value": "v"}, headers=reader).status_code == 403
    assert client.get(f"{API}/secrets", headers=reader).status_code == 403
    with project.db.session() as session:
        stored = session.scalars(select(ActionSecret.encrypted_value)).one()
    assert "n3w" not in stored

    runner = register_runner()
    project.push({".github/workflows/ci.yml": SIMPLE})
    spec = client.post(f"{PREFIX}/jobs/request", json={"wait_seconds": 2}, headers=runner.headers)
    assert spec.json()["spec"]["contexts"]["secrets"]["DEPLOY_KEY"] == "n3w"
    assert client.delete(f"{API}/secrets/DEPLOY_KEY", headers=owner).status_code == 204
    assert client.delete(f"{API}/secrets/DEPLOY_KEY", headers=owner).status_code == 404


def test_dispatch_validates_typed_inputs(
    client: TestClient,
    project: Project,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    project.push({".github/workflows/release.yml": DISPATCH, ".github/workflows/ci.yml": SIMPLE})
    owner = auth_header(make_token(project.owner))
    url = f"{API}/workflows/release.yml/dispatches"
    ok = client.post(
        url, json={"ref": "main", "inputs": {"level": "minor", "dry": "true"}}, headers=owner
    )
    assert ok.status_code == 204, ok.text
    runs = client.get(f"{API}/runs", params={"event": "workflow_dispatch"}).json()["workflow_runs"]
    assert len(runs) == 1
    assert (runs[0]["name"], runs[0]["head_branch"]) == ("Release", "main")
    with project.db.session() as session:
        from opencodehub.actions.models import WorkflowRun

        run = session.get(WorkflowRun, runs[0]["id"])
        assert run is not None
        assert run.inputs == {"level": "minor", "dry": True, "count": 1}

    cases = [
        ({"ref": "main", "inputs": {"level": "major"}}, 422),
        ({"ref": "main", "inputs": {}}, 422),
        ({"ref": "main", "inputs": {"level": "patch", "count": "many"}}, 422),
        ({"ref": "main", "inputs": {"level": "patch", "extra": "x"}}, 422),
        ({"ref": "nope", "inputs": {"level": "patch"}}, 422),
        ({"ref": "main; rm -rf /", "inputs": {"level": "patch"}}, 422),
    ]
    for body, status in cases:
        assert client.post(url, json=body, headers=owner).status_code == status, body
    no_trigger = client.post(
        f"{API}/workflows/ci.yml/dispatches", json={"ref": "main"}, headers=owner
    )
    assert no_trigger.status_code == 422
    assert (
        client.post(
            f"{API}/workflows/missing.yml/dispatches", json={"ref": "main"}, headers=owner
        ).status_code
        == 404
    )
    reader = auth_header(make_token(make_user("reader")))
    assert (
        client.post(
            url, json={"ref": "main", "inputs": {"level": "patch"}}, headers=reader
        ).status_code
        == 403
    )
    assert client.post(url, json={"ref": "main", "inputs": {"level": "patch"}}).status_code == 403


def test_registration_tokens_need_admin_rights(
    client: TestClient,
    project: Project,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    owner = auth_header(make_token(project.owner))
    answer = client.post(f"{API}/runners/registration-token", headers=owner)
    assert answer.status_code == 201
    assert set(answer.json()) == {"token", "expires_at"}
    assert answer.json()["expires_at"].endswith("Z")
    registered = client.post(
        f"{PREFIX}/register", json={"token": answer.json()["token"], "name": "a", "labels": []}
    )
    assert registered.status_code == 201
    reader = auth_header(make_token(make_user("reader")))
    assert client.post(f"{API}/runners/registration-token", headers=reader).status_code == 403
    assert client.get(f"{API}/runners", headers=reader).status_code == 403
    assert (
        client.post(
            "/api/v3/orgs/nope/actions/runners/registration-token", headers=owner
        ).status_code
        == 404
    )
