"""The scheduler's limits on when a job may start: `strategy.max-parallel` and a job's own
`concurrency:` (group, cancel-in-progress), across runs as on GitHub."""

from __future__ import annotations

from sqlalchemy import select

from opencodehub.actions import service
from opencodehub.actions.models import Conclusion, JobStatus, Runner, RunStatus, WorkflowJob
from opencodehub.runner.jobspec import JobResult
from tests.actions.conftest import Project
from tests.actions.test_runs import _runner


def _statuses(project: Project, run_id: int) -> list[tuple[str, str, str | None]]:
    with project.db.session() as session:
        jobs = session.scalars(
            select(WorkflowJob).where(WorkflowJob.run_id == run_id).order_by(WorkflowJob.id)
        ).all()
        return [
            (job.name, job.status.value, job.conclusion and job.conclusion.value) for job in jobs
        ]


def _count(project: Project, run_id: int, status: JobStatus) -> int:
    return sum(1 for _name, value, _c in _statuses(project, run_id) if value == status.value)


def _take(project: Project, runner_id: int) -> int | None:
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        if job is None:
            return None
        service.start_job(session, project.settings, job)
        return job.id


def _finish(project: Project, job_id: int, result: str = "success") -> None:
    with project.db.session() as session:
        job = session.get(WorkflowJob, job_id)
        assert job is not None
        service.complete_job(session, project.settings, job, JobResult(result=result))


MATRIX = """
on: push
jobs:
  test:
    strategy:
      max-parallel: ${{ fromJSON('2') }}
      matrix:
        n: [1, 2, 3, 4, 5]
    runs-on: ubuntu-latest
    steps: [{run: echo}]
"""


def test_max_parallel_keeps_at_most_that_many_matrix_jobs_queued_or_running(
    project: Project,
) -> None:
    run_id = project.push({".github/workflows/m.yml": MATRIX})[0]
    assert _count(project, run_id, JobStatus.QUEUED) == 2
    assert _count(project, run_id, JobStatus.WAITING) == 3
    runner_id = _runner(project)
    taken = [_take(project, runner_id), _take(project, runner_id)]
    assert None not in taken
    # Both slots are busy: nothing else is queued, so a runner finds nothing.
    assert _take(project, runner_id) is None
    finished = 0
    while finished < 5:
        job_id = taken.pop(0)
        assert job_id is not None
        _finish(project, job_id)
        finished += 1
        active = _count(project, run_id, JobStatus.QUEUED) + _count(
            project, run_id, JobStatus.IN_PROGRESS
        )
        assert active <= 2
        next_id = _take(project, runner_id)
        if next_id is not None:
            taken.append(next_id)
    assert project.run(run_id).conclusion == Conclusion.SUCCESS
    assert [c for _n, _s, c in _statuses(project, run_id)] == ["success"] * 5


def test_max_parallel_one_runs_a_matrix_in_order_and_fail_fast_cancels_the_rest(
    project: Project,
) -> None:
    workflow = MATRIX.replace("${{ fromJSON('2') }}", "1")
    run_id = project.push({".github/workflows/m.yml": workflow})[0]
    runner_id = _runner(project)
    first = _take(project, runner_id)
    assert first is not None and _take(project, runner_id) is None
    _finish(project, first, "failure")
    # fail-fast (the default) cancels the waiting ones instead of starting the next.
    assert [(s, c) for _n, s, c in _statuses(project, run_id)] == [
        ("completed", "failure"),
        *[("completed", "cancelled")] * 4,
    ]
    assert project.run(run_id).status == RunStatus.COMPLETED


JOB_GROUP = """
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps: [{run: echo}]
  deploy:
    needs: build
    concurrency: production
    runs-on: ubuntu-latest
    steps: [{run: echo}]
"""


def _by_name(project: Project, run_id: int) -> dict[str, tuple[str, str | None]]:
    return {name: (status, c) for name, status, c in _statuses(project, run_id)}


def test_job_concurrency_one_runs_one_waits_and_a_newer_waiting_job_replaces_it(
    project: Project,
) -> None:
    runner_id = _runner(project)
    first = project.push({".github/workflows/d.yml": JOB_GROUP})[0]
    second = project.push({"a": "1"})[0]
    third = project.push({"a": "2"})[0]
    # Only the job with the group waits: the runs' other jobs run side by side.
    builds = [_take(project, runner_id) for _ in range(3)]
    deploy_one = _take(project, runner_id)
    assert deploy_one is None
    for job_id in builds:
        assert job_id is not None
        _finish(project, job_id)
    assert _by_name(project, first)["deploy"] == ("queued", None)
    assert _by_name(project, second)["deploy"] == ("completed", "cancelled")
    assert _by_name(project, third)["deploy"] == ("waiting", None)
    assert project.run(second).conclusion == Conclusion.CANCELLED

    deploy_one = _take(project, runner_id)
    assert deploy_one is not None and _take(project, runner_id) is None
    _finish(project, deploy_one)
    assert project.run(first).conclusion == Conclusion.SUCCESS
    # The group is free: the waiting job of the third run is queued now.
    assert _by_name(project, third)["deploy"] == ("queued", None)
    deploy_three = _take(project, runner_id)
    assert deploy_three is not None
    _finish(project, deploy_three)
    assert project.run(third).conclusion == Conclusion.SUCCESS


def test_job_concurrency_cancel_in_progress_cancels_the_running_job(project: Project) -> None:
    workflow = JOB_GROUP.replace(
        "concurrency: production",
        "concurrency:\n      group: prod-${{ github.ref }}\n      cancel-in-progress: true",
    )
    runner_id = _runner(project)
    first = project.push({".github/workflows/d.yml": workflow})[0]
    build = _take(project, runner_id)
    assert build is not None
    _finish(project, build)
    running = _take(project, runner_id)
    assert running is not None
    second = project.push({"a": "1"})[0]
    build = _take(project, runner_id)
    assert build is not None
    _finish(project, build)
    with project.db.session() as session:
        job = session.get(WorkflowJob, running)
        assert job is not None and job.cancel_requested
        assert job.concurrency_group == "prod-refs/heads/main"
    # The new job waits until the runner acknowledges the cancellation.
    assert _by_name(project, second)["deploy"] == ("waiting", None)
    _finish(project, running, "cancelled")
    assert project.run(first).conclusion == Conclusion.CANCELLED
    assert _by_name(project, second)["deploy"] == ("queued", None)


def test_job_concurrency_group_with_a_bad_expression_fails_the_job(project: Project) -> None:
    workflow = JOB_GROUP.replace("concurrency: production", "concurrency: ${{ fromJSON('x') }}")
    runner_id = _runner(project)
    run_id = project.push({".github/workflows/d.yml": workflow})[0]
    build = _take(project, runner_id)
    assert build is not None
    _finish(project, build)
    assert _by_name(project, run_id)["deploy"] == ("completed", "failure")
    assert project.run(run_id).conclusion == Conclusion.FAILURE
