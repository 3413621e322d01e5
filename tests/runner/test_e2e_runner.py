"""End to end: a push with the real `git` client to a live server creates a run, a runner
started as a separate process (`opencodehub runner run`) takes its jobs and runs them on the
host or in a bubblewrap sandbox, and states and logs show through the REST API. Also: a runner
killed mid-job (the reaper ends the job), a runner stopped with SIGTERM (it finishes first),
and a branch name made to look like shell code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.actions import runners, service
from opencodehub.actions.models import Conclusion, JobStatus, WorkflowJob
from tests.conftest import PASSWORD, LiveServer
from tests.git.gitutil import commit, create_repo, repo_url, run_git

pytestmark = pytest.mark.slow

OPENCODEHUB = str(Path(sys.executable).with_name("opencodehub"))
DEADLINE = 180.0

WORKFLOW = """
name: E2E
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      word: ${{ steps.pick.outputs.word }}
    steps:
      - name: Greet
        run: echo "hello from $RUNNER_OS"
      - id: pick
        name: Pick
        env:
          BRANCH: ${{ github.ref_name }}
        run: |
          printf 'branch=%s\\n' "$BRANCH"
          echo "word=bird" >> "$GITHUB_OUTPUT"
  after:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - name: Use output
        run: echo "got ${{ needs.build.outputs.word }}"
"""

SLOW = """
name: Slow
on: push
jobs:
  wait:
    runs-on: ubuntu-latest
    steps:
      - name: Start
        run: echo started
      - name: Sleep
        run: sleep {seconds}
"""


def _poll(predicate: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Runner:
    def __init__(self, path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.config = path
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user("octo")


@pytest.fixture
def start_runner(
    live_server: LiveServer, owner: User, tmp_path: Path
) -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []
    workdirs: list[Path] = []

    def start(
        labels: str = "ubuntu-latest:host",
        capacity: int = 2,
        name: str = "e2e",
        extra: tuple[str, ...] = (),
    ) -> Runner:
        db = live_server.server.config.app.state.db
        with db.session() as session:
            user = session.get(User, owner.id)
            assert user is not None
            _, token = _repo_token(session, user)
        config = tmp_path / f"{name}.json"
        registered = subprocess.run(
            [OPENCODEHUB, "runner", "register", "--url", live_server.url, "--token", token,
             "--name", name, "--labels", labels, "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        assert json.loads(config.read_text())["labels"] == labels.split(",")
        log = tmp_path / f"{name}.log"
        # Outside pytest's private temp tree: the bubblewrap executor runs jobs as an
        # unprivileged user, who must be able to reach the job directories.
        workdir = Path(tempfile.mkdtemp(prefix=f"och-e2e-{name}-"))
        workdir.chmod(0o711)
        workdirs.append(workdir)
        process = subprocess.Popen(
            [OPENCODEHUB, "runner", "run", "--config", str(config), "--capacity", str(capacity),
             "--poll-wait", "2", "--grace", "30", "--workdir", str(workdir), *extra],
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        runner = Runner(config, process, log)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner.process.poll() is None:
            runner.process.kill()
        runner.process.wait(timeout=30)
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)


def _repo_token(session: Any, user: User) -> tuple[Any, str]:
    from opencodehub.repos import service as repos

    repository = repos.get_for(session, Actor(user=user, method="password"), "octo", "demo")
    return runners.create_registration_token(
        session, Actor(user=user, method="password"), repository=repository
    )


def _push(
    live_server: LiveServer,
    owner: User,
    tmp_path: Path,
    files: dict[str, str],
    branch: str = "main",
) -> str:
    home = tmp_path / "home"
    work = tmp_path / "work"
    url = repo_url(live_server.url, "octo", "demo", "octo")
    if not work.exists():
        run_git("clone", "-q", url, str(work), cwd=tmp_path, home=home)
    if branch != "main":
        run_git("checkout", "-q", "-B", branch, cwd=work, home=home)
    sha = commit(work, home, files, "change")
    run_git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work, home=home)
    return sha


def _api(live_server: LiveServer, path: str) -> Any:
    # Signed in: anonymous callers get 60 API requests an hour, and the polls add up.
    response = httpx.get(
        f"{live_server.url}/api/v3/repos/octo/demo/actions{path}",
        auth=("octo", PASSWORD),
        timeout=30,
    )
    response.raise_for_status()
    return response.json() if "json" in response.headers["content-type"] else response.text


def _completed_run(live_server: LiveServer, sha: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        runs = _api(live_server, f"/runs?head_sha={sha}")["workflow_runs"]
        return runs[0] if runs and runs[0]["status"] == "completed" else None

    return _poll(done, f"the run of {sha} to complete")


@pytest.mark.parametrize("executor", ["host", "bwrap"])
def test_push_to_runner_to_api(
    live_server: LiveServer,
    owner: User,
    tmp_path: Path,
    start_runner: Callable[..., Runner],
    executor: str,
) -> None:
    if executor == "bwrap" and shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is required: apt-get install bubblewrap")
    create_repo(live_server.server.config.app.state.db, live_server.settings, owner, "demo")
    runner = start_runner(labels=f"ubuntu-latest:{executor}")
    branch = "x;touch${IFS}pwned"
    sha = _push(live_server, owner, tmp_path, {".github/workflows/e2e.yml": WORKFLOW}, branch)
    run = _completed_run(live_server, sha)
    jobs = _api(live_server, f"/runs/{run['id']}/jobs")["jobs"]
    first_log = _api(live_server, f"/jobs/{jobs[0]['id']}/logs")
    assert run["conclusion"] == "success", runner.output() + first_log
    assert run["head_branch"] == branch
    assert [(j["name"], j["conclusion"], j["runner_name"]) for j in jobs] == [
        ("build", "success", "e2e"),
        ("after", "success", "e2e"),
    ]
    assert [(s["name"], s["conclusion"]) for s in jobs[0]["steps"]][-2:] == [
        ("Greet", "success"),
        ("Pick", "success"),
    ]
    build_log = _api(live_server, f"/jobs/{jobs[0]['id']}/logs")
    assert "hello from Linux" in build_log
    # The branch name reached the script as data, never as code.
    assert f"branch={branch}" in build_log
    assert not list(tmp_path.rglob("pwned"))
    assert "got bird" in _api(live_server, f"/jobs/{jobs[1]['id']}/logs")
    statuses = httpx.get(
        f"{live_server.url}/api/v3/repos/octo/demo/commits/{sha}/statuses", auth=("octo", PASSWORD)
    ).json()
    assert {s["context"] for s in statuses} >= {"E2E / build", "E2E / after"}

    # SIGTERM with nothing running: the runner stops polling and exits cleanly.
    runner.process.send_signal(signal.SIGTERM)
    assert runner.process.wait(timeout=30) == 0


def test_killed_runner_is_reaped_and_sigterm_lets_jobs_finish(
    live_server: LiveServer, owner: User, tmp_path: Path, start_runner: Callable[..., Runner]
) -> None:
    db = live_server.server.config.app.state.db
    create_repo(db, live_server.settings, owner, "demo")
    doomed = start_runner(name="doomed")
    sha = _push(
        live_server, owner, tmp_path, {".github/workflows/slow.yml": SLOW.format(seconds=120)}
    )

    def sleeping() -> int | None:
        with db.session() as session:
            job = (
                session.query(WorkflowJob)
                .filter(WorkflowJob.status == JobStatus.IN_PROGRESS)
                .first()
            )
            if job is None:
                return None
            steps = service.job_steps(session, job)
            return job.id if any(step.name == "Sleep" for step in steps) else None

    job_id = _poll(sleeping, "the job to reach its sleep step")
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(timeout=30)
    with db.session() as session:
        assert service.reap(session, live_server.settings, lease_seconds=0) == 1
    job = _api(live_server, f"/jobs/{job_id}")
    assert (job["status"], job["conclusion"]) == ("completed", "failure")
    assert "started" in _api(live_server, f"/jobs/{job_id}/logs")
    assert _completed_run(live_server, sha)["conclusion"] == "failure"
    with db.session() as session:
        stored = session.get(WorkflowJob, job_id)
        assert stored is not None and stored.error == "The runner lost contact with the server."
        assert stored.conclusion == Conclusion.FAILURE

    # A runner told to stop (SIGTERM) mid-job finishes the job before it exits.
    calm = start_runner(name="calm")
    sha = _push(
        live_server, owner, tmp_path, {".github/workflows/slow.yml": SLOW.format(seconds=2)}
    )
    _poll(sleeping, "the next job to reach its sleep step")
    calm.process.send_signal(signal.SIGTERM)
    assert calm.process.wait(timeout=60) == 0, calm.output()
    assert _completed_run(live_server, sha)["conclusion"] == "success", calm.output()


MATRIX = """
name: Many
on: push
jobs:
  each:
    strategy:
      matrix:
        n: {values}
    runs-on: ubuntu-latest
    steps:
      - run: echo "n=${{{{ matrix.n }}}}"
      - run: echo "second of ${{{{ matrix.n }}}}"
"""


def test_many_jobs_over_two_runners_run_once_each_and_none_is_lost(
    live_server: LiveServer, owner: User, tmp_path: Path, start_runner: Callable[..., Runner]
) -> None:
    """Two runners of capacity 3 share a 24-job matrix, each job taken by one long poll
    (the job in the answer), its steps' states batched with its lines, its last lines in its
    completion: every job completes, each was leased once, ran on one runner, and its log
    holds its own lines once, in order."""
    db = live_server.server.config.app.state.db
    create_repo(db, live_server.settings, owner, "demo")
    first = start_runner(name="first", capacity=3)
    second = start_runner(name="second", capacity=3)
    count = 24
    workflow = MATRIX.format(values=json.dumps(list(range(count))))
    sha = _push(live_server, owner, tmp_path, {".github/workflows/many.yml": workflow})
    run = _completed_run(live_server, sha)
    assert run["conclusion"] == "success", first.output() + second.output()
    with db.session() as session:
        jobs = session.query(WorkflowJob).filter(WorkflowJob.run_id == run["id"]).all()
        assert len(jobs) == count
        assert {(job.status, job.conclusion, job.lease_count) for job in jobs} == {
            (JobStatus.COMPLETED, Conclusion.SUCCESS, 1)
        }
        job_ids = sorted(job.id for job in jobs)
    outputs = first.output() + second.output()
    for job_id in job_ids:
        assert outputs.count(f"job {job_id}: success") == 1, outputs
        log = _api(live_server, f"/jobs/{job_id}/logs").splitlines()
        mine = [line for line in log if line.startswith(("n=", "second of"))]
        assert len(mine) == 2 and mine[1] == f"second of {mine[0][2:]}", log
        steps = _api(live_server, f"/jobs/{job_id}")["steps"]
        assert [s["conclusion"] for s in steps][-2:] == ["success", "success"]
    for runner in (first, second):
        runner.process.send_signal(signal.SIGTERM)
        assert runner.process.wait(timeout=30) == 0, runner.output()


CONTAINER = """
name: Container
on: push
jobs:
  inside:
    runs-on: ubuntu-latest
    steps:
      - name: Where
        shell: sh
        run: echo "in $(id -un) container"
"""


def test_push_to_a_docker_runner(
    live_server: LiveServer,
    owner: User,
    tmp_path: Path,
    start_runner: Callable[..., Runner],
    podman_host: str,
) -> None:
    """The docker executor against Podman's Docker-compatible API (the engine's test image)."""
    from tests.runner.conftest import TEST_IMAGE

    create_repo(live_server.server.config.app.state.db, live_server.settings, owner, "demo")
    runner = start_runner(
        labels=f"ubuntu-latest:docker://{TEST_IMAGE}", extra=("--docker-host", podman_host)
    )
    sha = _push(live_server, owner, tmp_path, {".github/workflows/c.yml": CONTAINER})
    try:
        run = _completed_run(live_server, sha)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{runner.output()}") from None
    assert run["error"] is None
    jobs = _api(live_server, f"/runs/{run['id']}/jobs")["jobs"]
    log = _api(live_server, f"/jobs/{jobs[0]['id']}/logs")
    assert run["conclusion"] == "success", runner.output() + log
    assert "in root container" in log
