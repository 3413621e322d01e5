"""Runs from triggers: the job graph, `if`, matrices, concurrency, invalid workflows, schedules,
the reaper and the re-enqueue sweep (service level, on every database engine)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from opencodehub.actions import queue as actions_queue
from opencodehub.actions import runners, service
from opencodehub.actions.models import (
    Conclusion,
    JobStatus,
    Runner,
    RunStatus,
    WorkflowJob,
    WorkflowRun,
    WorkflowSchedule,
)
from opencodehub.core.time import utcnow
from opencodehub.repos import statuses
from opencodehub.repos.models import Repository
from opencodehub.runner.jobspec import JobResult
from tests.actions.conftest import SIMPLE, Project


def _runner(project: Project, labels: list[str] | None = None) -> int:
    with project.db.session() as session:
        runner, _secret = runners.register_runner(
            session, project.registration_token(), "r", labels or ["ubuntu-latest"]
        )
        return runner.id


def _claim(project: Project, runner_id: int) -> tuple[int, str]:
    """The runner claims the next job and starts it: (the job's id, its job token)."""
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None, "no job was queued"
        return job.id, service.start_job(session, project.settings, job).token


def _jobs(project: Project, run_id: int) -> dict[str, WorkflowJob]:
    with project.db.session() as session:
        jobs = session.scalars(select(WorkflowJob).where(WorkflowJob.run_id == run_id)).all()
        for job in jobs:
            session.expunge(job)
        return {job.name: job for job in jobs}


def _take_and_finish(
    project: Project, runner_id: int, result: str = "success", **outputs: str
) -> str:
    """A runner takes the next job and reports `result`; returns the job's name."""
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None, "no job was queued"
        service.start_job(session, project.settings, job)
        service.complete_job(
            session, project.settings, job, JobResult(result=result, outputs=outputs)
        )
        return job.name


def test_push_runs_the_job_graph_once_per_push(project: Project) -> None:
    run_ids = project.push({".github/workflows/ci.yml": SIMPLE}, message="Add CI")
    assert len(run_ids) == 1
    run = project.run(run_ids[0])
    assert (run.name, run.event, run.run_number, run.display_title) == ("CI", "push", 1, "Add CI")
    jobs = _jobs(project, run.id)
    assert jobs["build"].status == JobStatus.QUEUED
    assert jobs["test"].status == JobStatus.WAITING

    # A second worker handling the same event creates nothing.
    with project.db.session() as session:
        repo = session.get(Repository, project.repo.id)
        assert repo is not None
        head = run.head_sha
    assert project.handle_push("main", "0" * 40, head) == []

    runner_id = _runner(project)
    assert _take_and_finish(project, runner_id, greeting="hi") == "build"
    assert _jobs(project, run.id)["test"].status == JobStatus.QUEUED
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        test_job = service.claim_from_database(session, runner)
        assert test_job is not None
        spec = service.start_job(session, project.settings, test_job)
        # needs outputs reach the dependent job
        assert spec.contexts.needs == {
            "build": {"result": "success", "outputs": {"greeting": "hi"}}
        }
        service.complete_job(session, project.settings, test_job, JobResult(result="success"))
    run = project.run(run.id)
    assert (run.status, run.conclusion) == (RunStatus.COMPLETED, Conclusion.SUCCESS)

    # Each job's result is a commit status `{workflow} / {job}`.
    with project.db.session() as session:
        repo = session.get(Repository, project.repo.id)
        assert repo is not None
        latest = {s.context: s.state.value for s in statuses.latest_by_context(session, repo, head)}
    assert latest == {"CI / build": "success", "CI / test": "success"}

    # The next push gets the next run number.
    assert project.run(project.push({"README": "x"})[0]).run_number == 2


def test_invalid_workflow_fails_the_run_with_positions(project: Project) -> None:
    bad = "name: Broken\non: push\njobs:\n  build:\n    runs-on: x\n    steps:\n      - bogus: 1\n"
    run = project.run(project.push({".github/workflows/broken.yml": bad})[0])
    assert (run.status, run.conclusion) == (RunStatus.COMPLETED, Conclusion.FAILURE)
    assert run.error is not None
    assert run.error.startswith(".github/workflows/broken.yml:7:")
    assert _jobs(project, run.id) == {}


def test_job_if_skips_dependents_and_failure_runs_cleanup(project: Project) -> None:
    workflow = """
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps: [{run: "false"}]
  b:
    needs: a
    runs-on: ubuntu-latest
    steps: [{run: echo b}]
  cleanup:
    needs: a
    if: failure()
    runs-on: ubuntu-latest
    steps: [{run: echo cleanup}]
  after-b:
    needs: b
    runs-on: ubuntu-latest
    steps: [{run: echo c}]
  never:
    if: github.ref == 'refs/heads/other'
    runs-on: ubuntu-latest
    steps: [{run: echo never}]
"""
    run_id = project.push({".github/workflows/w.yml": workflow})[0]
    jobs = _jobs(project, run_id)
    assert jobs["never"].conclusion == Conclusion.SKIPPED
    runner_id = _runner(project)
    assert _take_and_finish(project, runner_id, "failure") == "a"
    jobs = _jobs(project, run_id)
    assert jobs["b"].conclusion == Conclusion.SKIPPED
    assert jobs["after-b"].conclusion == Conclusion.SKIPPED
    assert jobs["cleanup"].status == JobStatus.QUEUED
    assert _take_and_finish(project, runner_id) == "cleanup"
    run = project.run(run_id)
    assert (run.status, run.conclusion) == (RunStatus.COMPLETED, Conclusion.FAILURE)


def test_matrix_expands_and_an_oversized_matrix_fails_the_run(project: Project) -> None:
    workflow = """
on: push
jobs:
  build:
    strategy:
      matrix:
        os: [ubuntu-latest, debian]
        py: ["3.12", "3.13"]
    runs-on: ${{ matrix.os }}
    steps: [{run: echo}]
"""
    run_id = project.push({".github/workflows/m.yml": workflow})[0]
    jobs = _jobs(project, run_id)
    assert sorted(jobs) == [
        "build (debian, 3.12)",
        "build (debian, 3.13)",
        "build (ubuntu-latest, 3.12)",
        "build (ubuntu-latest, 3.13)",
    ]
    assert jobs["build (debian, 3.13)"].runs_on == ["debian"]
    assert jobs["build (debian, 3.13)"].matrix == {"os": "debian", "py": "3.13"}

    huge = (
        "on: push\njobs:\n  big:\n    strategy:\n      matrix:\n        a: {a}\n"
        "        b: {b}\n    runs-on: x\n    steps: [{{run: echo}}]\n"
    )
    values = list(range(20))
    run_ids = project.push({".github/workflows/huge.yml": huge.format(a=values, b=values)})
    run = next(r for r in map(project.run, run_ids) if r.workflow_path.endswith("huge.yml"))
    assert run.conclusion == Conclusion.FAILURE
    assert run.error is not None and "400" in run.error and "256" in run.error
    assert _jobs(project, run.id) == {}


def test_concurrency_waits_or_cancels_the_older_run(project: Project) -> None:
    waiting = """
on: push
concurrency: deploy-${{ github.ref }}
jobs:
  deploy: {runs-on: ubuntu-latest, steps: [{run: echo}]}
"""
    first = project.push({".github/workflows/d.yml": waiting})[0]
    second = project.push({"a": "1"})[0]
    assert project.run(second).status == RunStatus.PENDING
    third = project.push({"a": "2"})[0]
    # GitHub keeps one pending run per group: the newer replaces it.
    assert project.run(second).conclusion == Conclusion.CANCELLED
    assert project.run(third).status == RunStatus.PENDING
    runner_id = _runner(project)
    _take_and_finish(project, runner_id)
    assert project.run(first).conclusion == Conclusion.SUCCESS
    assert project.run(third).status == RunStatus.QUEUED

    cancelling = waiting.replace(
        "concurrency: deploy-${{ github.ref }}",
        "concurrency:\n  group: deploy-${{ github.ref }}\n  cancel-in-progress: true",
    )
    fourth = project.push({".github/workflows/d.yml": cancelling})[0]
    assert project.run(third).conclusion == Conclusion.CANCELLED
    assert project.run(fourth).status == RunStatus.QUEUED


def test_reaper_requeues_once_then_fails_a_lost_job(project: Project) -> None:
    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    runner_id = _runner(project)
    stale = utcnow() - timedelta(minutes=5)
    job_id, _token = _claim(project, runner_id)
    with project.db.session() as session:
        session.execute(
            update(WorkflowJob).where(WorkflowJob.id == job_id).values(heartbeat_at=stale)
        )
    with project.db.session() as session:
        assert service.reap(session, project.settings) == 1
    job = _jobs(project, run_id)["build"]
    assert (job.status, job.requeues, job.runner_id, job.token_hash) == (
        JobStatus.QUEUED,
        1,
        None,
        None,
    )

    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None and job.id == job_id
        service.start_job(session, project.settings, job)
        service.update_step(session, job, 0, "Run echo hello", "in_progress", None)
        job.heartbeat_at = stale
    with project.db.session() as session:
        assert service.reap(session, project.settings) == 1
    job = _jobs(project, run_id)["build"]
    assert (job.status, job.conclusion) == (JobStatus.COMPLETED, Conclusion.FAILURE)
    assert job.error == "The runner lost contact with the server."
    assert _jobs(project, run_id)["test"].conclusion == Conclusion.SKIPPED
    assert project.run(run_id).conclusion == Conclusion.FAILURE
    with project.db.session() as session:
        assert service.reap(session, project.settings) == 0


def test_a_lost_queue_entry_is_pushed_again_by_the_sweep(project: Project) -> None:
    project.push({".github/workflows/ci.yml": SIMPLE})
    queue = actions_queue.get_queue("")
    assert isinstance(queue, actions_queue.EmbeddedQueue)
    assert queue.pending() == 1
    queue.clear()  # what a restarted Redis does to its lists
    with project.db.session() as session:
        assert service.reenqueue(session, project.settings) == 0  # not stale yet
    with project.db.session() as session:
        assert service.reenqueue(session, project.settings, older_than=timedelta(0)) == 1
    job_id = asyncio.run(queue.pop(["ubuntu-latest", "self-hosted"], 1.0))
    assert job_id == _jobs(project, _first_run(project))["build"].id


def _first_run(project: Project) -> int:
    with project.db.session() as session:
        run_id = session.scalar(select(WorkflowRun.id).order_by(WorkflowRun.id))
        assert run_id is not None
        return run_id


def test_schedule_fires_once_however_many_workers_check(project: Project) -> None:
    workflow = """
on:
  schedule:
    - cron: "*/5 * * * *"
jobs:
  nightly: {runs-on: ubuntu-latest, steps: [{run: echo}]}
"""
    assert project.push({".github/workflows/nightly.yml": workflow}) == []
    with project.db.session() as session:
        rows = session.scalars(select(WorkflowSchedule)).all()
        assert [(row.workflow_path, row.cron) for row in rows] == [
            (".github/workflows/nightly.yml", "*/5 * * * *")
        ]
        session.execute(update(WorkflowSchedule).values(since=utcnow() - timedelta(hours=2)))
    now = utcnow()
    with project.db.session() as session:
        assert service.fire_schedules(session, project.settings, now) == 1
    with project.db.session() as session:
        assert service.fire_schedules(session, project.settings, now) == 0
        runs = session.scalars(select(WorkflowRun)).all()
        assert [(run.event, run.head_branch) for run in runs] == [("schedule", "main")]

    # Removing the cron from the default branch removes the schedule.
    project.push(
        {
            ".github/workflows/nightly.yml": workflow.replace(
                'schedule:\n    - cron: "*/5 * * * *"', "workflow_dispatch:"
            )
        }
    )
    with project.db.session() as session:
        assert session.scalars(select(WorkflowSchedule)).all() == []


def test_a_runner_writes_its_job_while_the_reaper_holds_the_run(project: Project) -> None:
    """A runner's request writes its job's row twice in one transaction (the lease refresh,
    then the log count); on PostgreSQL the second write checks the job's foreign key with a
    key-share lock on the run. The reaper locks the run first, then the job: had the run's
    lock excluded that check, each would wait for the other (a deadlock seen in CI)."""
    import threading

    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    job_id, _token = _claim(project, _runner(project))
    written = threading.Event()
    failures: list[BaseException] = []

    def runner_request() -> None:
        try:
            with project.db.session() as session:
                job = session.get(WorkflowJob, job_id)
                assert job is not None
                job.heartbeat_at = utcnow()
                session.flush()
                job.log_lines = (job.log_lines or 0) + 1
                session.flush()
            written.set()
        except BaseException as exc:
            failures.append(exc)
            written.set()

    with project.db.session() as reaper:
        service.read_committed(reaper)
        service.lock_run(reaper, run_id)
        writer = threading.Thread(target=runner_request)
        writer.start()
        # SQLite has one writer at a time: there the lock is the database's, held by nobody
        # here (lock_run only reads), so the request goes through on every engine.
        assert written.wait(timeout=30), "the runner's write waited for the run's lock"
        writer.join(timeout=30)
    assert failures == []
    assert _jobs(project, run_id)["build"].log_lines == 1
