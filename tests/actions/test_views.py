"""The Actions pages: runs, a run's job graph and errors, a job's logs, the live log stream
(Server-Sent Events), cancel/re-run, and the runner and secret settings."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.runner.protocol import PREFIX
from tests.actions.conftest import SIMPLE, Project, RunnerHandle
from tests.web.forms import log_in, post_form


def _events(text: str) -> list[tuple[str, str | None, dict]]:
    found = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "event" in fields:
            found.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return found


def test_runs_run_and_job_pages_with_the_log_stream(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    bad = "on: push\njobs:\n  x:\n    runs-on: [\n"
    bad_run, _good_run = project.push(
        {".github/workflows/ci.yml": SIMPLE, ".github/workflows/bad.yml": bad}
    )
    page = client.get("/octo/demo/actions")
    assert page.status_code == 200
    assert page.text.count('data-testid="run-row"') == 2
    assert 'class="active">Actions' in page.text.replace('href="/octo/demo/actions" ', "")
    failing = client.get(f"/octo/demo/actions/runs/{bad_run}")
    assert failing.status_code == 200
    assert 'data-testid="workflow-errors"' in failing.text
    assert ".github/workflows/bad.yml:" in failing.text

    runner = register_runner()
    spec = client.post(
        f"{PREFIX}/jobs/request", json={"wait_seconds": 2}, headers=runner.headers
    ).json()["spec"]
    job_id, run_id = spec["job_id"], spec["run_id"]
    graph = client.get(f"/octo/demo/actions/runs/{run_id}")
    assert graph.text.count('data-testid="job-link"') == 2
    url = f"{PREFIX}/jobs/{job_id}"
    client.post(
        f"{url}/steps",
        json={"index": 0, "name": "Say hi", "status": "in_progress"},
        headers=runner.headers,
    )
    lines = [{"step": 0, "text": "<b>hello</b>"}, {"step": 0, "text": "second"}]
    client.post(f"{url}/logs", json={"start": 0, "lines": lines}, headers=runner.headers)

    live = client.get(f"/octo/demo/actions/runs/{run_id}/jobs/{job_id}")
    assert live.status_code == 200
    assert "&lt;b&gt;hello&lt;/b&gt;" in live.text  # log text is escaped
    assert f"/octo/demo/actions/jobs/{job_id}/logs/stream?after=1" in live.text

    client.post(
        f"{url}/complete",
        json={
            "result": {
                "result": "success",
                "outputs": {},
                "steps": [
                    {"index": 0, "name": "Say hi", "outcome": "success", "conclusion": "success"}
                ],
            }
        },
        headers=runner.headers,
    )
    stream = client.get(f"/octo/demo/actions/jobs/{job_id}/logs/stream")
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = _events(stream.text)
    assert [(name, event_id) for name, event_id, _ in events] == [
        ("line", "0"),
        ("line", "1"),
        ("state", None),
        ("done", None),
    ]
    assert events[0][2] == {"step": 0, "text": "<b>hello</b>"}
    assert events[2][2]["steps"] == [
        {"number": 0, "name": "Say hi", "status": "completed", "conclusion": "success"}
    ]
    resumed = client.get(
        f"/octo/demo/actions/jobs/{job_id}/logs/stream", headers={"Last-Event-ID": "0"}
    )
    assert [e[1] for e in _events(resumed.text) if e[0] == "line"] == ["1"]
    assert client.get("/octo/demo/actions/jobs/999999/logs/stream").status_code == 404
    done = client.get(f"/octo/demo/actions/runs/{run_id}/jobs/{job_id}")
    assert "data-stream" not in done.text  # finished: no live stream
    assert client.get(f"/octo/demo/actions/runs/{run_id + 100}/jobs/{job_id}").status_code == 404


def test_cancel_and_rerun_from_the_run_page(
    client: TestClient, project: Project, make_user: Callable[..., User]
) -> None:
    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    page = f"/octo/demo/actions/runs/{run_id}"
    anonymous = client.get(page)
    assert "Cancel run" not in anonymous.text
    log_in(client, "octo")
    assert post_form(client, page, f"{page}/cancel").status_code == 303
    assert (
        client.get(f"/api/v3/repos/octo/demo/actions/runs/{run_id}").json()["conclusion"]
        == "cancelled"
    )
    assert post_form(client, page, f"{page}/rerun").status_code == 303
    run = client.get(f"/api/v3/repos/octo/demo/actions/runs/{run_id}").json()
    assert (run["status"], run["run_attempt"]) == ("queued", 2)
    missing_csrf = client.post(f"{page}/cancel", follow_redirects=False)
    assert missing_csrf.status_code == 403


def test_settings_pages_for_runners_and_secrets(
    client: TestClient, project: Project, make_user: Callable[..., User]
) -> None:
    make_user("reader")
    log_in(client, "reader")
    assert client.get("/octo/demo/settings/actions").status_code == 403
    assert client.get("/-/admin/runners").status_code == 404
    client.cookies.clear()
    log_in(client, "octo")
    settings_page = "/octo/demo/settings/actions"
    created = post_form(client, settings_page, f"{settings_page}/registration-token")
    assert created.status_code == 200
    assert 'data-testid="registration-token"' in created.text
    assert "--token ochreg_" in created.text
    saved = post_form(
        client, settings_page, f"{settings_page}/secrets", {"name": "api_key", "value": "v"}
    )
    assert saved.status_code == 303
    page = client.get(settings_page).text
    assert "API_KEY" in page and ">v<" not in page
    rejected = post_form(
        client, settings_page, f"{settings_page}/secrets", {"name": "GITHUB_X", "value": "v"}
    )
    assert rejected.status_code == 422

    make_user("siteadmin", admin=True)
    client.cookies.clear()
    log_in(client, "siteadmin")
    admin = post_form(client, "/-/admin/runners", "/-/admin/runners/registration-token")
    assert admin.status_code == 200 and "--token ochreg_" in admin.text


def test_the_run_page_polls_its_job_states_until_the_run_completes(
    client: TestClient, project: Project, register_runner: Callable[..., RunnerHandle]
) -> None:
    (run_id,) = project.push({".github/workflows/ci.yml": SIMPLE})
    page = client.get(f"/octo/demo/actions/runs/{run_id}")
    live_url = f"/octo/demo/actions/runs/{run_id}/live"
    assert f'hx-get="{live_url}"' in page.text
    assert 'hx-trigger="every 2s"' in page.text

    runner = register_runner()
    spec = client.post(
        f"{PREFIX}/jobs/request", json={"wait_seconds": 2}, headers=runner.headers
    ).json()["spec"]
    fragment = client.get(live_url)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'id="run-live"' in fragment.text
    assert fragment.text.count('data-testid="job-link"') == 2
    assert "state-running" in fragment.text  # build runs, test still waits
    assert 'hx-trigger="every 2s"' in fragment.text

    def finish(job_id: int) -> None:
        done = client.post(
            f"{PREFIX}/jobs/{job_id}/complete",
            json={"result": {"result": "success"}},
            headers=runner.headers,
        )
        assert done.status_code == 204

    finish(spec["job_id"])
    second = client.post(
        f"{PREFIX}/jobs/request", json={"wait_seconds": 2}, headers=runner.headers
    ).json()["spec"]
    finish(second["job_id"])
    final = client.get(live_url)
    # Completed: both jobs show success and the fragment no longer asks to be polled.
    assert final.text.count("state-success") >= 3
    assert "hx-trigger" not in final.text and "hx-get" not in final.text
    assert client.get(f"/octo/demo/actions/runs/{run_id + 100}/live").status_code == 404


def test_the_live_fragment_of_a_private_repository_is_hidden(
    client: TestClient, project: Project
) -> None:
    (run_id,) = project.push({".github/workflows/ci.yml": SIMPLE})
    with project.db.session() as session:
        from opencodehub.repos.models import Repository, Visibility

        repo = session.get(Repository, project.repo.id)
        assert repo is not None
        repo.visibility = Visibility.PRIVATE
    assert client.get(f"/octo/demo/actions/runs/{run_id}/live").status_code == 404
