"""`strategy.fail-fast` of a matrix calling job, as on GitHub: when one combination's called
workflow fails, the other combinations' called jobs that are not done and the combinations
not started yet are cancelled, exactly as for an ordinary matrix (the same code path);
`fail-fast: false` lets them run."""

from __future__ import annotations

import pytest

from opencodehub.actions.models import Conclusion, JobStatus, WorkflowJob
from opencodehub.actions.workflow import WorkflowError, parse_workflow
from tests.actions.conftest import Project
from tests.actions.test_job_limits import _finish, _take
from tests.actions.test_reusable_limits import CALLED, _drain, _jobs, _state, _take_one
from tests.actions.test_runs import _runner


def _matrix_caller(strategy: str = "") -> str:
    return f"""
name: Deploy
on: push
jobs:
  deploy:
    strategy:{strategy}
      matrix:
        target: [a, b, c]
    uses: ./.github/workflows/called.yml
    with:
      target: ${{{{ matrix.target }}}}
"""


def _push(project: Project, caller: str) -> int:
    files = {".github/workflows/ci.yml": caller, ".github/workflows/called.yml": CALLED}
    [run_id] = project.push(files)
    return run_id


def _name(project: Project, job_id: int) -> str:
    with project.db.session() as session:
        job = session.get(WorkflowJob, job_id)
        assert job is not None
        return job.name


def _combination(name: str) -> str:
    return name.split(" / ")[0]


def test_a_failed_called_workflow_cancels_the_other_combinations(project: Project) -> None:
    runner_id = _runner(project)
    run_id = _push(project, _matrix_caller())
    # Every combination's workflow started: each `one` is queued.
    first, second = _take_one(project, runner_id), _take_one(project, runner_id)
    failed, other = _combination(_name(project, first)), _combination(_name(project, second))
    _finish(project, first, "failure")
    state = _state(project, run_id)
    # The failed combination's call ends with its workflow's result (`two` is skipped) ...
    assert state[failed] == ("completed", "failure")
    assert state[f"{failed} / two"] == ("completed", "skipped")
    # ... the running job of another combination is told to stop, what is queued or waiting
    # in the others ends at once, and their calls end once their jobs have.
    with project.db.session() as session:
        running = session.get(WorkflowJob, second)
        assert running is not None and running.cancel_requested
    assert state[f"{other} / one"] == ("in_progress", None)
    assert state[f"{other} / two"] == ("completed", "cancelled")
    assert state[other] == ("waiting", None)
    third = ({"deploy (a)", "deploy (b)", "deploy (c)"} - {failed, other}).pop()
    assert state[f"{third} / one"] == ("completed", "cancelled")
    assert state[f"{third} / two"] == ("completed", "cancelled")
    assert state[third] == ("completed", "cancelled")
    assert _take(project, runner_id) is None

    _finish(project, second, "cancelled")
    assert _state(project, run_id)[other] == ("completed", "cancelled")
    run = project.run(run_id)
    assert (run.status.value, run.conclusion) == ("completed", Conclusion.FAILURE)


def test_fail_fast_cancels_the_combinations_not_started_under_max_parallel(
    project: Project,
) -> None:
    runner_id = _runner(project)
    run_id = _push(project, _matrix_caller("\n      max-parallel: 1"))
    job_id = _take_one(project, runner_id)
    assert _name(project, job_id) == "deploy (a) / one"
    _finish(project, job_id, "failure")
    # The other combinations never got their called jobs.
    assert _state(project, run_id) == {
        "deploy (a)": ("completed", "failure"),
        "deploy (b)": ("completed", "cancelled"),
        "deploy (c)": ("completed", "cancelled"),
        "deploy (a) / one": ("completed", "failure"),
        "deploy (a) / two": ("completed", "skipped"),
    }
    assert _take(project, runner_id) is None
    assert project.run(run_id).conclusion == Conclusion.FAILURE


def test_without_fail_fast_the_other_combinations_keep_running(project: Project) -> None:
    runner_id = _runner(project)
    run_id = _push(project, _matrix_caller("\n      fail-fast: false"))
    job_id = _take_one(project, runner_id)
    failed = _combination(_name(project, job_id))
    _finish(project, job_id, "failure")
    assert _state(project, run_id)[failed] == ("completed", "failure")
    # The two other workflows run to the end (`one` then `two` each).
    assert len(_drain(project, runner_id)) == 4
    state = _state(project, run_id)
    for combination in {"deploy (a)", "deploy (b)", "deploy (c)"} - {failed}:
        assert state[combination] == ("completed", "success")
        assert state[f"{combination} / two"] == ("completed", "success")
    rows = _jobs(project, run_id)
    assert not any(row.cancel_requested for row in rows.values())
    assert all(row.status == JobStatus.COMPLETED for row in rows.values())
    assert project.run(run_id).conclusion == Conclusion.FAILURE


def test_continue_on_error_is_refused_on_a_calling_job_as_on_github() -> None:
    text = _matrix_caller().replace("    strategy:", "    continue-on-error: true\n    strategy:")
    with pytest.raises(WorkflowError) as info:
        parse_workflow("ci.yml", text)
    assert [str(issue) for issue in info.value.errors] == [
        "ci.yml:6:5: 'continue-on-error' is not allowed in a job that calls a reusable workflow"
    ]
