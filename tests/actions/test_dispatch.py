"""A claim whose long poll lost its runner is undone at once instead of waiting for the reaper;
jobs of one run ending at once."""

from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm.attributes import set_committed_value

from opencodehub.actions import queue as actions_queue
from opencodehub.actions import service
from opencodehub.actions.models import (
    Conclusion,
    JobStatus,
    Runner,
    RunStatus,
    WorkflowJob,
    WorkflowRun,
)
from opencodehub.actions.tokens import actor_for_job_token
from opencodehub.core.errors import NotFound
from opencodehub.runner.jobspec import JobResult
from tests.actions.conftest import SIMPLE, Project
from tests.actions.test_runs import _claim, _runner
from tests.repos.git_helpers import commit_files


def test_a_claim_nobody_received_is_queued_again_as_if_never_taken(project: Project) -> None:
    project.push({".github/workflows/ci.yml": SIMPLE})
    runner_id = _runner(project)
    job_id, token = _claim(project, runner_id)
    queue = actions_queue.get_queue("")
    assert isinstance(queue, actions_queue.EmbeddedQueue)
    queue.clear()
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        assert service.unclaim_job(session, project.settings, runner, job_id)
    with project.db.session() as session:
        job = session.get(WorkflowJob, job_id)
        assert job is not None
        assert (job.status, job.runner_id, job.lease_count) == (JobStatus.QUEUED, None, 0)
        assert actor_for_job_token(session, token) is None
        runner = session.get(Runner, runner_id)
        assert runner is not None and not runner.busy
    # Pushed to the queue again, so a waiting runner gets it without the sweep.
    assert queue.pending() == 1

    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None and job.id == job_id and job.lease_count == 1
        service.start_job(session, project.settings, job)
        service.update_step(session, job, 0, "Run", "in_progress", None)
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        # A job whose steps started is the runner's: only the reaper or the runner ends it.
        assert not service.unclaim_job(session, project.settings, runner, job_id)
        assert not service.unclaim_job(session, project.settings, runner, job_id + 1000)


def test_queued_jobs_reach_the_queue_when_their_transaction_commits(project: Project) -> None:
    """Not when a savepoint inside it is released (commit statuses, steps are written in
    some) or rolled back: a runner taking the id before the commit would find the job not
    queued yet and drop it."""
    queue = actions_queue.get_queue("")
    assert isinstance(queue, actions_queue.EmbeddedQueue)
    sha = commit_files(project.settings, project.repo, {".github/workflows/two.yml": TWO.encode()})
    update = {"ref": "refs/heads/main", "before": "0" * 40, "after": sha, "created": True}
    payload = {
        "repository_id": project.repo.id,
        "repository": f"{project.owner.username}/{project.repo.name}",
        "pusher_id": project.owner.id,
        "pusher": project.owner.username,
        "pushed_at": sha,
        "updates": [{**update, "deleted": False, "forced": False}],
    }
    seen: list[int] = []
    with project.db.session() as session:
        assert len(service.handle_push(session, project.settings, payload)) == 1
        seen.append(queue.pending())
        with session.begin_nested():
            pass
        seen.append(queue.pending())
        try:
            with session.begin_nested():
                raise ValueError("rolled back")
        except ValueError:
            pass
        seen.append(queue.pending())
    assert seen == [0, 0, 0]
    assert queue.pending() == 2


TWO = """
name: Two
on: push
jobs:
  each:
    strategy:
      matrix:
        n: [1, 2]
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ matrix.n }}
"""


def test_the_last_two_jobs_ending_at_once_complete_the_run(project: Project) -> None:
    """Two jobs end in overlapping transactions: the second waits for the first (the run's
    row lock), sees it completed, and completes the run; each job ends once."""
    run_id = project.push({".github/workflows/two.yml": TWO})[0]
    runner_id = _runner(project)
    job_ids = []
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        for _ in range(2):
            job = service.claim_from_database(session, runner)
            assert job is not None
            service.start_job(session, project.settings, job)
            job_ids.append(job.id)
    result = JobResult(result="success")
    first_holds_lock = threading.Event()
    second_waits = threading.Event()
    second_thread = threading.get_ident()

    def note_locking_statement(
        _conn: object, _cursor: object, statement: str, *_args: object
    ) -> None:
        # The second ending's first locking statement: the run's row lock (`FOR NO KEY UPDATE`
        # on PostgreSQL, `FOR UPDATE` on MariaDB), or on SQLite, which has no row locks, its
        # first write. None can return while the first ending's transaction is open, so once
        # it is sent the second ending is waiting.
        locking = re.search(
            r"FOR (NO KEY )?UPDATE", statement
        ) or statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
        if locking and threading.get_ident() == second_thread:
            second_waits.set()

    def end_first() -> None:
        with project.db.session() as session:
            service.read_committed(session)  # as the runner routes' unit of work does
            runner = session.get(Runner, runner_id)
            assert runner is not None
            job = service.held_job(session, runner, job_ids[0])
            service.complete_job(session, project.settings, job, result)
            first_holds_lock.set()
            # Commit only once the second ending has started and must wait for this one.
            assert second_waits.wait(30), "the second ending never reached the run's lock"

    first = threading.Thread(target=end_first)
    event.listen(project.db.engine, "before_cursor_execute", note_locking_statement)
    try:
        first.start()
        assert first_holds_lock.wait(30)
        with project.db.session() as session:
            service.read_committed(session)
            runner = session.get(Runner, runner_id)
            assert runner is not None
            job = service.held_job(session, runner, job_ids[1])
            service.complete_job(session, project.settings, job, result)
        first.join(30)
    finally:
        event.remove(project.db.engine, "before_cursor_execute", note_locking_statement)
        second_waits.set()  # never leave the first ending waiting if the second failed
        first.join(30)
    with project.db.session() as session:
        run = session.get(WorkflowRun, run_id)
        assert run is not None
        assert (run.status, run.conclusion) == (RunStatus.COMPLETED, Conclusion.SUCCESS)
        # A completion arriving again finds the job ended: refused, nothing changes.
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = session.get(WorkflowJob, job_ids[0])
        assert job is not None
        # As a retried request's read, taken before the first one committed, saw it.
        set_committed_value(job, "status", JobStatus.IN_PROGRESS)
        with pytest.raises(NotFound):
            service.complete_job(session, project.settings, job, result)
        session.rollback()
    with project.db.session() as session:
        statuses = session.scalars(
            select(WorkflowJob.status).where(WorkflowJob.run_id == run_id)
        ).all()
        assert statuses == [JobStatus.COMPLETED, JobStatus.COMPLETED]
