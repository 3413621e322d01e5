"""The runner protocol's server side: registration, the long poll, heartbeats, steps, logs in
acknowledged batches, completion, and the job token's scope; with what a forged or confused
runner sends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from opencodehub.actions.models import JobLogLine, RunnerRegistrationToken, WorkflowJob
from opencodehub.core.time import utcnow
from opencodehub.repos.models import Visibility
from opencodehub.runner.protocol import PREFIX
from tests.actions.conftest import SIMPLE, Project, RunnerHandle
from tests.conftest import auth_header
from tests.repos.git_helpers import create_repo

RESULT_OK = {"result": {"result": "success", "outputs": {"out": "1"}, "steps": []}}


def _poll(client: TestClient, runner: RunnerHandle, wait: float = 0) -> Any:
    return client.post(
        f"{PREFIX}/jobs/request", json={"wait_seconds": wait}, headers=runner.headers
    )


def test_registration_and_runner_credentials_are_checked(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    body = {"token": "ochreg_forged", "name": "r1", "labels": ["x"]}
    assert client.post(f"{PREFIX}/register", json=body).status_code == 401
    token = project.registration_token()
    with project.db.session() as session:
        session.execute(
            update(RunnerRegistrationToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    stale = client.post(f"{PREFIX}/register", json={**body, "token": token})
    assert stale.status_code == 401
    assert stale.json()["message"] == "The registration token is invalid or has expired."
    bad_name = client.post(
        f"{PREFIX}/register", json={**body, "token": project.registration_token(), "name": "a b;"}
    )
    assert bad_name.status_code == 422

    runner = register_runner(labels=["Ubuntu-Latest", "ubuntu-latest", "gpu"])
    listed = client.get(
        "/api/v3/repos/octo/demo/actions/runners",
        headers={"Authorization": "Basic b2N0bzpjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl"},
    ).json()
    assert listed["total_count"] == 1
    assert [label["name"] for label in listed["runners"][0]["labels"]] == [
        "ubuntu-latest",
        "gpu",
        "self-hosted",
    ]
    assert listed["runners"][0]["status"] == "online"

    for headers in ({}, {"Authorization": "Bearer ochr_forged"}, {"Authorization": "Basic eDp5"}):
        for path, payload in (("/jobs/request", {"wait_seconds": 0}), ("/heartbeat", {})):
            answer = client.post(f"{PREFIX}{path}", json=payload, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.json() == {
                "message": "Bad runner credentials",
                "documentation_url": "https://docs.github.com/rest",
            }
    assert _poll(client, runner).status_code == 204


def test_a_job_through_the_protocol(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    other = register_runner("other", labels=["gpu"])
    runner = register_runner()
    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    assert _poll(client, other).status_code == 204  # labels do not match

    assignment = _poll(client, runner, wait=5).json()
    spec = assignment["spec"]
    job_id = spec["job_id"]
    assert assignment["labels"] == ["ubuntu-latest"]
    assert (spec["run_id"], spec["job_key"], spec["repository"]) == (run_id, "build", "octo/demo")
    assert spec["job"]["steps"] == [{"run": "echo hello"}]
    assert spec["contexts"]["github"]["ref"] == "refs/heads/main"
    assert spec["contexts"]["secrets"]["GITHUB_TOKEN"] == spec["token"]
    # A job is handed out once.
    assert _poll(client, runner).status_code == 204

    # The job token reaches its own repository, read-only by default, and nothing private else.
    token = {"Authorization": f"Bearer {spec['token']}"}
    assert client.get("/api/v3/repos/octo/demo/actions/runs", headers=token).status_code == 200
    secret_repo = create_repo(
        project.db, project.settings, project.owner, "secret", visibility=Visibility.PRIVATE
    )
    assert client.get(f"/api/v3/repos/octo/{secret_repo.name}", headers=token).status_code == 404
    assert (
        client.post("/api/v3/repos/octo/demo/actions/runs/1/cancel", headers=token).status_code
        == 403
    )

    # Steps and logs; a batch sent twice or overlapping changes nothing.
    url = f"{PREFIX}/jobs/{job_id}"
    step = {"index": 0, "name": "Run echo hello", "status": "in_progress"}
    assert client.post(f"{url}/steps", json=step, headers=runner.headers).status_code == 204
    batch = {"start": 0, "lines": [{"step": 0, "text": f"line {n}"} for n in range(3)]}
    for _ in range(2):
        answer = client.post(f"{url}/logs", json=batch, headers=runner.headers)
        assert answer.json() == {"next_index": 3}
    gap = {"start": 5, "lines": [{"step": 0, "text": "line 5"}]}
    assert client.post(f"{url}/logs", json=gap, headers=runner.headers).json() == {"next_index": 3}
    overlap = {"start": 2, "lines": [{"step": 0, "text": f"line {n}"} for n in (2, 3, 4)]}
    assert client.post(f"{url}/logs", json=overlap, headers=runner.headers).json() == {
        "next_index": 6
    }
    with project.db.session() as session:
        stored = session.scalars(
            select(JobLogLine.text).where(JobLogLine.job_id == job_id).order_by(JobLogLine.idx)
        ).all()
    assert stored == [f"line {n}" for n in range(6)]
    annotation = {"level": "warning", "message": "careful", "file": "a.py", "line": 3}
    assert (
        client.post(f"{url}/annotations", json=annotation, headers=runner.headers).status_code
        == 204
    )
    done = {"index": 0, "name": "Run echo hello", "status": "completed", "conclusion": "success"}
    assert client.post(f"{url}/steps", json=done, headers=runner.headers).status_code == 204

    # Another runner cannot touch the job.
    for path, payload in (("/logs", batch), ("/complete", RESULT_OK), ("/steps", step)):
        answer = client.post(f"{url}{path}", json=payload, headers=other.headers)
        assert answer.status_code == 404
    heartbeat = client.post(
        f"{PREFIX}/heartbeat", json={"job_ids": [job_id]}, headers=other.headers
    )
    assert heartbeat.json() == {"cancel": [], "unknown": [job_id]}
    heartbeat = client.post(
        f"{PREFIX}/heartbeat", json={"job_ids": [job_id]}, headers=runner.headers
    )
    assert heartbeat.json() == {"cancel": [], "unknown": []}

    assert client.post(f"{url}/complete", json=RESULT_OK, headers=runner.headers).status_code == 204
    # Done: the runner holds it no more, the token is revoked, the log moved to storage.
    assert client.post(f"{url}/logs", json=batch, headers=runner.headers).status_code == 404
    assert client.post(f"{url}/complete", json=RESULT_OK, headers=runner.headers).status_code == 404
    assert client.get("/api/v3/repos/octo/demo/actions/runs", headers=token).status_code == 401
    with project.db.session() as session:
        job = session.get(WorkflowJob, job_id)
        assert job is not None
        assert (job.log_key, job.outputs) == (f"logs/{job_id}", {"out": "1"})
        assert session.scalars(select(JobLogLine).where(JobLogLine.job_id == job_id)).all() == []
    assert (project.settings.data_dir / "storage" / "logs" / str(job_id)).exists()
    text = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}/logs")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == "".join(f"line {n}\n" for n in range(6))
    job_json = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}").json()
    assert job_json["steps"] == [
        {
            "name": "Run echo hello",
            "status": "completed",
            "conclusion": "success",
            "number": 1,
            "started_at": job_json["steps"][0]["started_at"],
            "completed_at": job_json["steps"][0]["completed_at"],
        }
    ]
    assert (job_json["status"], job_json["conclusion"], job_json["runner_name"]) == (
        "completed",
        "success",
        "r1",
    )
    assert _poll(client, runner).json()["spec"]["job_key"] == "test"


def test_cancel_reaches_the_runner_through_its_heartbeat(
    client: TestClient,
    project: Project,
    register_runner: Callable[..., RunnerHandle],
    make_token: Callable[..., str],
) -> None:
    runner = register_runner()
    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    job_id = _poll(client, runner).json()["spec"]["job_id"]
    headers = auth_header(make_token(project.owner))
    cancel = client.post(f"/api/v3/repos/octo/demo/actions/runs/{run_id}/cancel", headers=headers)
    assert cancel.status_code == 202
    heartbeat = client.post(
        f"{PREFIX}/heartbeat", json={"job_ids": [job_id]}, headers=runner.headers
    ).json()
    assert heartbeat == {"cancel": [job_id], "unknown": []}
    result = {"result": {"result": "cancelled", "outputs": {}, "steps": []}}
    client.post(f"{PREFIX}/jobs/{job_id}/complete", json=result, headers=runner.headers)
    run = client.get(f"/api/v3/repos/octo/demo/actions/runs/{run_id}").json()
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    jobs = client.get(f"/api/v3/repos/octo/demo/actions/runs/{run_id}/jobs").json()["jobs"]
    assert [(job["name"], job["conclusion"]) for job in jobs] == [
        ("build", "cancelled"),
        ("test", "cancelled"),
    ]
    again = client.post(f"/api/v3/repos/octo/demo/actions/runs/{run_id}/cancel", headers=headers)
    assert again.status_code == 409


def test_a_runner_shutting_down_hands_back_an_unstarted_job(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    first, second = register_runner("first"), register_runner("second")
    project.push({".github/workflows/ci.yml": SIMPLE})
    job_id = _poll(client, first).json()["spec"]["job_id"]
    released = client.post(f"{PREFIX}/jobs/{job_id}/release", headers=first.headers)
    assert released.json() == {"requeued": True}
    assert _poll(client, second, wait=5).json()["spec"]["job_id"] == job_id
    step = {"index": 0, "name": "s", "status": "in_progress"}
    client.post(f"{PREFIX}/jobs/{job_id}/steps", json=step, headers=second.headers)
    released = client.post(f"{PREFIX}/jobs/{job_id}/release", headers=second.headers)
    assert released.json() == {"requeued": False}
    job = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}").json()
    assert (job["status"], job["conclusion"]) == ("completed", "failure")


def test_repository_runners_take_only_their_repositorys_jobs(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    from opencodehub.accounts.actor import Actor
    from opencodehub.actions import runners
    from opencodehub.actions.queue import get_queue

    mine = register_runner("mine")
    other_repo = create_repo(project.db, project.settings, project.owner, "other")
    project.repo = other_repo
    project.push({".github/workflows/ci.yml": SIMPLE})
    assert _poll(client, mine, wait=0.5).status_code == 204
    # The id went back to the queue for a runner that may take it.
    assert get_queue("").pending() == 1  # type: ignore[attr-defined]
    with project.db.session() as session:
        _, token = runners.create_registration_token(session, Actor(user=None, method="system"))
    body = {"token": token, "name": "shared", "labels": ["ubuntu-latest"]}
    shared = RunnerHandle(
        **{
            k: v
            for k, v in client.post(f"{PREFIX}/register", json=body).json().items()
            if k in ("id", "secret")
        }
    )
    spec = _poll(client, shared, wait=2).json()["spec"]
    assert (spec["repository"], spec["job_key"]) == ("octo/other", "build")


def test_job_token_works_for_git_over_http_with_the_workflows_permissions(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    import base64

    runner = register_runner()
    writer = SIMPLE.replace("name: CI\n", "name: CI\npermissions:\n  contents: write\n")
    project.push({".github/workflows/ci.yml": writer})
    spec = _poll(client, runner, wait=2).json()["spec"]
    project.push({".github/workflows/ci.yml": SIMPLE})
    reader_spec = _poll(client, runner, wait=2).json()["spec"]

    def refs(token: str, service: str) -> int:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return client.get(
            f"/octo/demo.git/info/refs?service={service}",
            headers={"Authorization": f"Basic {basic}"},
        ).status_code

    assert refs(spec["token"], "git-receive-pack") == 200
    assert refs(reader_spec["token"], "git-upload-pack") == 200
    assert refs(reader_spec["token"], "git-receive-pack") == 403
    assert refs("ochj_forged", "git-upload-pack") == 401


def test_step_states_ride_in_log_batches_and_the_last_lines_in_the_completion(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    runner = register_runner()
    other = register_runner("other")
    project.push({".github/workflows/ci.yml": SIMPLE})
    job_id = _poll(client, runner).json()["spec"]["job_id"]
    url = f"{PREFIX}/jobs/{job_id}"
    start = {"index": 0, "name": "Run echo hello", "status": "in_progress"}
    batch = {"start": 0, "lines": [{"step": None, "text": "set up"}], "steps": [start]}
    # Sent twice (a lost answer): the line is stored once, the step started once.
    for _ in range(2):
        answer = client.post(f"{url}/logs", json=batch, headers=runner.headers)
        assert answer.json() == {"next_index": 1}
    assert client.post(f"{url}/logs", json=batch, headers=other.headers).status_code == 404
    job = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}").json()
    assert [(s["name"], s["status"]) for s in job["steps"]] == [("Run echo hello", "in_progress")]

    too_many = {"start": 1, "lines": [], "steps": [start] * 101}
    assert client.post(f"{url}/logs", json=too_many, headers=runner.headers).status_code == 422

    # The step's end in a later batch; the start's batch arriving again after it (a retry
    # whose first attempt was slow) does not reopen the step.
    end = {**start, "status": "completed", "conclusion": "success", "outcome": "success"}
    ended = {"start": 1, "lines": [], "steps": [end]}
    assert client.post(f"{url}/logs", json=ended, headers=runner.headers).status_code == 200
    assert client.post(f"{url}/logs", json=batch, headers=runner.headers).status_code == 200
    job = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}").json()
    assert [(s["status"], s["conclusion"]) for s in job["steps"]] == [("completed", "success")]

    done = {
        "result": {
            "result": "success",
            "outputs": {},
            "steps": [
                {
                    "index": 0,
                    "name": "Run echo hello",
                    "outcome": "success",
                    "conclusion": "success",
                }
            ],
        },
        "logs": {"start": 1, "lines": [{"step": 0, "text": "hello"}]},
    }
    assert client.post(f"{url}/complete", json=done, headers=runner.headers).status_code == 204
    # A completion sent again after a lost answer finds the job done: 404, nothing changes.
    assert client.post(f"{url}/complete", json=done, headers=runner.headers).status_code == 404
    text = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}/logs").text
    assert text == "set up\nhello\n"
    job = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}").json()
    assert (job["status"], job["conclusion"]) == ("completed", "success")
    assert [(s["status"], s["conclusion"]) for s in job["steps"]] == [("completed", "success")]
    # The job that needs it was queued by the completion.
    assert _poll(client, runner).json()["spec"]["job_key"] == "test"


def test_a_step_started_through_a_log_batch_is_never_run_again(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    first, second = register_runner("first"), register_runner("second")
    project.push({".github/workflows/ci.yml": SIMPLE})
    job_id = _poll(client, first).json()["spec"]["job_id"]
    step = {"index": 0, "name": "s", "status": "in_progress"}
    batch = {"start": 0, "lines": [], "steps": [step]}
    assert client.post(f"{PREFIX}/jobs/{job_id}/logs", json=batch, headers=first.headers).json()
    released = client.post(f"{PREFIX}/jobs/{job_id}/release", headers=first.headers)
    assert released.json() == {"requeued": False}
    assert _poll(client, second).status_code == 204


def test_the_completions_last_lines_join_the_stored_ones_in_the_archived_log(
    client: TestClient,
    project: Project,
    register_runner: Callable[..., RunnerHandle],
    monkeypatch: Any,
) -> None:
    """The last lines go straight into the archived log: a line the server holds already wins
    over the completion's copy, and lines after a gap keep their order. When the log cannot be
    archived, every line (the last ones too) stays in the database."""
    runner = register_runner()
    project.push({".github/workflows/ci.yml": SIMPLE})
    job_id = _poll(client, runner).json()["spec"]["job_id"]
    url = f"{PREFIX}/jobs/{job_id}"
    held = {"start": 0, "lines": [{"step": None, "text": f"held {n}"} for n in range(3)]}
    assert client.post(f"{url}/logs", json=held, headers=runner.headers).json() == {"next_index": 3}
    late = {"start": 6, "lines": [{"step": 0, "text": "late 6"}]}
    assert client.post(f"{url}/logs", json=late, headers=runner.headers).json() == {"next_index": 3}
    tail = {"start": 2, "lines": [{"step": 0, "text": f"tail {n}"} for n in range(2, 6)]}
    done = {**RESULT_OK, "logs": tail}
    assert client.post(f"{url}/complete", json=done, headers=runner.headers).status_code == 204
    text = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{job_id}/logs").text
    tails = [f"tail {n}" for n in range(3, 6)]
    assert text.splitlines() == ["held 0", "held 1", "held 2", *tails, "late 6"]
    with project.db.session() as session:
        job = session.get(WorkflowJob, job_id)
        assert job is not None
        assert (job.log_key, job.log_lines) == (f"logs/{job_id}", 7)
        assert session.scalars(select(JobLogLine).where(JobLogLine.job_id == job_id)).all() == []

    # Storage fails: the job completes all the same, its lines stay in the database.
    from opencodehub.storage.local import LocalStorage

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(LocalStorage, "put", broken)
    second = _poll(client, runner).json()["spec"]["job_id"]
    url = f"{PREFIX}/jobs/{second}"
    first = {"start": 0, "lines": [{"step": None, "text": "one"}]}
    assert client.post(f"{url}/logs", json=first, headers=runner.headers).status_code == 200
    tail = {"start": 0, "lines": [{"step": None, "text": "dup"}, {"step": 0, "text": "two"}]}
    done = {**RESULT_OK, "logs": tail}
    assert client.post(f"{url}/complete", json=done, headers=runner.headers).status_code == 204
    with project.db.session() as session:
        job = session.get(WorkflowJob, second)
        assert job is not None
        assert (job.status, job.log_key, job.log_lines) == ("completed", None, 2)
    text = client.get(f"/api/v3/repos/octo/demo/actions/jobs/{second}/logs").text
    assert text == "one\ntwo\n"
