"""End to end with the real `git` client, a live server and a runner process on the host:
a reusable workflow with inputs, secrets and outputs; a call into a private repository that
fails clearly; `pull_request` on the test merge commit (checked out by `actions/checkout`),
no `pull_request` run for a conflicting pull request, and `pull_request_target` from a fork
with the base's workflow and secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencodehub.accounts.models import User
from tests.conftest import PASSWORD, LiveServer
from tests.git.gitutil import commit, create_repo, repo_url, run_git
from tests.runner import test_e2e_runner as e2e
from tests.runner.test_e2e_runner import Runner, _api, _completed_run, _poll, _push

# The runner end-to-end tests' fixtures: the `octo` account and runner processes.
owner = e2e.owner
start_runner = e2e.start_runner

pytestmark = pytest.mark.slow

CALLER = """
name: Caller
on: push
jobs:
  setup:
    runs-on: ubuntu-latest
    outputs:
      who: ${{ steps.pick.outputs.who }}
    steps:
      - id: pick
        run: echo "who=world" >> "$GITHUB_OUTPUT"
  call:
    needs: setup
    uses: ./.github/workflows/greet.yml
    with:
      who: ${{ needs.setup.outputs.who }}
      times: 2
    secrets:
      api-key: ${{ secrets.API_KEY }}
  after:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: echo "the call said ${{ needs.call.outputs.greeting }}"
"""

GREET = """
name: Greet
on:
  workflow_call:
    inputs:
      who: {type: string, required: true}
      times: {type: number, default: 1}
    secrets:
      api-key: {required: true}
    outputs:
      greeting:
        value: ${{ jobs.hello.outputs.greeting }}
jobs:
  hello:
    runs-on: ubuntu-latest
    outputs:
      greeting: ${{ steps.say.outputs.greeting }}
    steps:
      - id: say
        env:
          KEY: ${{ secrets.api-key }}
        run: |
          test "$KEY" = "k3y-value" && echo "the key arrived"
          echo "greeting=hello ${{ inputs.who }} x${{ inputs.times }}" >> "$GITHUB_OUTPUT"
"""

PR = """
name: PR
on: pull_request
jobs:
  merge:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 2
      - run: |
          echo "head=$(git rev-parse HEAD) sha=$GITHUB_SHA ref=$GITHUB_REF"
          echo "parents=$(git rev-parse HEAD^1) $(git rev-parse HEAD^2)"
          cat base.txt topic.txt
"""

TARGET = """
name: Target
on: pull_request_target
jobs:
  triage:
    runs-on: ubuntu-latest
    steps:
      - env:
          KEY: ${{ secrets.API_KEY }}
        run: |
          test "$KEY" = "k3y-value" && echo "base workflow has the secret"
          echo "sha=$GITHUB_SHA ref=$GITHUB_REF"
"""


def _secret(live_server: LiveServer, name: str, value: str) -> None:
    response = httpx.put(
        f"{live_server.url}/api/v3/repos/octo/demo/actions/secrets/{name}",
        json={"value": value},
        auth=("octo", PASSWORD),
        timeout=30,
    )
    assert response.status_code in (201, 204), response.text


def _job_logs(live_server: LiveServer, run: dict[str, Any]) -> dict[str, str]:
    jobs = _api(live_server, f"/runs/{run['id']}/jobs")["jobs"]
    return {job["name"]: _api(live_server, f"/jobs/{job['id']}/logs") for job in jobs}


def _runs(live_server: LiveServer, event: str) -> list[dict[str, Any]]:
    return _api(live_server, f"/runs?event={event}")["workflow_runs"]


def test_a_reusable_workflow_end_to_end(
    live_server: LiveServer, owner: User, tmp_path: Path, start_runner: Callable[..., Runner]
) -> None:
    db = live_server.server.config.app.state.db
    create_repo(db, live_server.settings, owner, "demo")
    create_repo(db, live_server.settings, owner, "private-lib", private=True)
    _secret(live_server, "API_KEY", "k3y-value")
    runner = start_runner()
    sha = _push(
        live_server,
        owner,
        tmp_path,
        {".github/workflows/ci.yml": CALLER, ".github/workflows/greet.yml": GREET},
    )
    run = _completed_run(live_server, sha)
    logs = _job_logs(live_server, run)
    assert run["conclusion"] == "success", runner.output() + "\n".join(logs.values())
    assert list(logs) == ["setup", "after", "call / hello"]
    assert "the key arrived" in logs["call / hello"]
    assert "k3y-value" not in logs["call / hello"]
    assert "the call said hello world x2" in logs["after"]

    # A call into a repository the run may not read fails the run with the position.
    sha = _push(
        live_server,
        owner,
        tmp_path,
        {
            ".github/workflows/ci.yml": CALLER.replace(
                "./.github/workflows/greet.yml",
                "octo/private-lib/.github/workflows/greet.yml@main",
            )
        },
    )
    run = _completed_run(live_server, sha)
    assert run["conclusion"] == "failure"
    assert run["error"] == (
        ".github/workflows/ci.yml:14:11: 'octo/private-lib/.github/workflows/greet.yml@main': "
        "repository 'octo/private-lib' was not found, or octo/demo may not read it"
    )
    assert _api(live_server, f"/runs/{run['id']}/jobs")["jobs"] == []


def _open_pull(live_server: LiveServer, user: str, head: str, title: str) -> dict[str, Any]:
    response = httpx.post(
        f"{live_server.url}/api/v3/repos/octo/demo/pulls",
        json={"title": title, "head": head, "base": "main"},
        auth=(user, PASSWORD),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_pull_requests_on_the_merge_commit_and_targets_from_a_fork(
    live_server: LiveServer,
    owner: User,
    make_user: Callable[..., User],
    tmp_path: Path,
    start_runner: Callable[..., Runner],
) -> None:
    db = live_server.server.config.app.state.db
    create_repo(db, live_server.settings, owner, "demo")
    make_user("forker")
    _secret(live_server, "API_KEY", "k3y-value")
    runner = start_runner()
    home, work = tmp_path / "home", tmp_path / "work"
    url = repo_url(live_server.url, "octo", "demo", "octo")
    run_git("clone", "-q", url, str(work), cwd=tmp_path, home=home)
    files = {
        ".github/workflows/pr.yml": PR,
        ".github/workflows/target.yml": TARGET,
        "base.txt": "base\n",
        "shared.txt": "one\n",
    }
    commit(work, home, files, "base")
    run_git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work, home=home)
    # A topic branch, and a base that moves on after it forked.
    run_git("checkout", "-q", "-b", "topic", cwd=work, home=home)
    head = commit(work, home, {"topic.txt": "topic\n"}, "topic")
    run_git("push", "-q", "origin", "topic", cwd=work, home=home)
    run_git("checkout", "-q", "main", cwd=work, home=home)
    base_tip = commit(work, home, {"base.txt": "base moved\n"}, "base moves")
    run_git("push", "-q", "origin", "main", cwd=work, home=home)

    pull = _open_pull(live_server, "octo", "topic", "clean")

    def pr_run() -> dict[str, Any] | None:
        runs = [r for r in _runs(live_server, "pull_request") if r["status"] == "completed"]
        return runs[0] if runs else None

    run = _poll(pr_run, "the pull_request run")
    logs = _job_logs(live_server, run)
    assert run["conclusion"] == "success", runner.output() + "\n".join(logs.values())
    merge_sha = run["head_sha"]
    assert merge_sha not in (head, base_tip)
    log = logs["merge"]
    assert f"head={merge_sha} sha={merge_sha} ref=refs/pull/{pull['number']}/merge" in log
    assert f"parents={base_tip} {head}" in log
    assert "base moved" in log and "topic" in log
    refs = run_git("ls-remote", url, f"refs/pull/{pull['number']}/merge", cwd=work, home=home)
    assert refs.stdout.split()[0] == merge_sha

    # A fork whose pull request conflicts with the base and rewrites the target workflow to
    # print the secret: no pull_request run, and pull_request_target runs the base's file.
    response = httpx.post(
        f"{live_server.url}/api/v3/repos/octo/demo/forks", auth=("forker", PASSWORD), timeout=60
    )
    assert response.status_code == 202, response.text
    fork_url = repo_url(live_server.url, "forker", "demo", "forker")
    fork_work = tmp_path / "fork"
    _poll(
        lambda: (
            httpx.get(
                f"{live_server.url}/api/v3/repos/forker/demo", auth=("forker", PASSWORD)
            ).status_code
            == 200
        ),
        "the fork",
    )
    run_git("clone", "-q", fork_url, str(fork_work), cwd=tmp_path, home=home)
    # From before the base moved, changing the same line: the merge conflicts.
    run_git("reset", "-q", "--hard", "HEAD~1", cwd=fork_work, home=home)
    commit(
        fork_work,
        home,
        {
            ".github/workflows/target.yml": TARGET.replace(
                'test "$KEY" = "k3y-value" && echo "base workflow has the secret"',
                'echo "stolen $KEY"',
            ),
            "base.txt": "fork side\n",
        },
        "fork",
    )
    run_git("push", "-q", "origin", "HEAD:refs/heads/fix", cwd=fork_work, home=home)
    fork_pull = _open_pull(live_server, "forker", "forker:fix", "from a fork")

    def target_runs() -> list[dict[str, Any]] | None:
        runs = [
            r
            for r in _runs(live_server, "pull_request_target")
            if r["status"] == "completed" and r["display_title"] == "from a fork"
        ]
        return runs or None

    [target] = _poll(target_runs, "the pull_request_target run")
    logs = _job_logs(live_server, target)
    assert target["conclusion"] == "success", runner.output() + "\n".join(logs.values())
    assert target["head_sha"] == base_tip
    assert "base workflow has the secret" in logs["triage"]
    assert f"sha={base_tip} ref=refs/heads/main" in logs["triage"]
    assert "stolen" not in logs["triage"]
    # Created with the same event, in the same transaction: there is no pull_request run. One
    # listing of every run reads one snapshot; it holds the target run, so it would hold a
    # pull_request run of the same event too.
    listing = _api(live_server, "/runs?per_page=100")
    every_run = listing["workflow_runs"]
    assert len(every_run) == listing["total_count"]
    assert target["id"] in {r["id"] for r in every_run}
    titles = [r["display_title"] for r in every_run if r["event"] == "pull_request"]
    assert "from a fork" not in titles
    refs = run_git("ls-remote", url, f"refs/pull/{fork_pull['number']}/merge", cwd=work, home=home)
    assert refs.stdout.strip() == ""
