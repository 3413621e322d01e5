"""A claim whose long poll lost its runner is undone at once instead of waiting for the reaper."""

from __future__ import annotations

from opencodehub.actions import queue as actions_queue
from opencodehub.actions import service
from opencodehub.actions.models import JobStatus, Runner, WorkflowJob
from opencodehub.actions.tokens import actor_for_job_token
from tests.actions.conftest import SIMPLE, Project
from tests.actions.test_runs import _runner


def test_a_claim_nobody_received_is_queued_again_as_if_never_taken(project: Project) -> None:
    project.push({".github/workflows/ci.yml": SIMPLE})
    runner_id = _runner(project)
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None
        token = service.start_job(session, project.settings, job).token
        job_id = job.id
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
