"""Reusable workflows under the scheduler's limits, as on GitHub: a calling job's
`concurrency:` holds its group for all the called workflow's jobs (one unit, the group
evaluated in the caller's contexts), a calling job's `strategy.max-parallel` bounds how many
of its matrix's called workflows run at once, and a called workflow's top-level
`concurrency:` governs its jobs as one unit too (evaluated with the call's inputs), in
addition to the calling job's group when both are set."""

from __future__ import annotations

from sqlalchemy import select

from opencodehub.actions import service
from opencodehub.actions.calls import CALLED_GROUP
from opencodehub.actions.models import Conclusion, JobStatus, WorkflowJob, WorkflowRun
from tests.actions.conftest import Project
from tests.actions.test_job_limits import _finish, _take
from tests.actions.test_runs import _runner

CALLED = """
on:
  workflow_call:
    inputs:
      target:
        type: string
        default: staging
jobs:
  one:
    runs-on: ubuntu-latest
    steps: [{run: echo one}]
  two:
    needs: one
    runs-on: ubuntu-latest
    steps: [{run: echo two}]
"""

CALLER = """
name: Deploy
on: push
jobs:
  deploy:
    concurrency: deploy-${{ github.workflow }}-${{ github.ref }}
    uses: ./.github/workflows/called.yml
"""


def _jobs(project: Project, run_id: int) -> dict[str, WorkflowJob]:
    """The run's rows by name (a matrix's rows by name and combination)."""
    with project.db.session() as session:
        rows = session.scalars(
            select(WorkflowJob).where(WorkflowJob.run_id == run_id).order_by(WorkflowJob.id)
        ).all()
        for row in rows:
            session.expunge(row)
        return {row.name: row for row in rows}


def _state(project: Project, run_id: int) -> dict[str, tuple[str, str | None]]:
    return {
        name: (job.status.value, job.conclusion and job.conclusion.value)
        for name, job in _jobs(project, run_id).items()
    }


def _take_one(project: Project, runner_id: int) -> int:
    job_id = _take(project, runner_id)
    assert job_id is not None, "no job was queued"
    return job_id


def test_a_calling_jobs_concurrency_holds_the_group_for_all_the_called_jobs(
    project: Project,
) -> None:
    runner_id = _runner(project)
    files = {".github/workflows/ci.yml": CALLER, ".github/workflows/called.yml": CALLED}
    first = project.push(files)[0]
    second = project.push({"a": "1"})[0]
    third = project.push({"a": "2"})[0]
    # The group is evaluated in the caller's contexts, and held by the call row.
    assert _jobs(project, first)["deploy"].concurrency_group == "deploy-Deploy-refs/heads/main"
    assert _state(project, first) == {
        "deploy": ("waiting", None),
        "deploy / one": ("queued", None),
        "deploy / two": ("waiting", None),
    }
    # The second call waited (no called job was added) until a newer one replaced it.
    assert _state(project, second) == {"deploy": ("completed", "cancelled")}
    assert project.run(second).conclusion == Conclusion.CANCELLED
    assert _state(project, third) == {"deploy": ("waiting", None)}

    _finish(project, _take_one(project, runner_id))
    # `one` is done but `two` is not: the unit still holds the group.
    assert _state(project, third) == {"deploy": ("waiting", None)}
    two = _take_one(project, runner_id)
    assert two == _jobs(project, first)["deploy / two"].id
    assert _state(project, third) == {"deploy": ("waiting", None)}
    _finish(project, two)
    assert project.run(first).conclusion == Conclusion.SUCCESS
    # The group is free: the third run's called jobs are added now.
    assert _state(project, third) == {
        "deploy": ("waiting", None),
        "deploy / one": ("queued", None),
        "deploy / two": ("waiting", None),
    }
    _finish(project, _take_one(project, runner_id))
    _finish(project, _take_one(project, runner_id))
    assert project.run(third).conclusion == Conclusion.SUCCESS
    assert _state(project, third)["deploy"] == ("completed", "success")


def test_cancel_in_progress_on_a_calling_job_cancels_the_running_called_jobs(
    project: Project,
) -> None:
    caller = CALLER.replace(
        "concurrency: deploy-${{ github.workflow }}-${{ github.ref }}",
        "concurrency:\n      group: deploy\n      cancel-in-progress: true",
    )
    runner_id = _runner(project)
    files = {".github/workflows/ci.yml": caller, ".github/workflows/called.yml": CALLED}
    first = project.push(files)[0]
    running = _take_one(project, runner_id)
    second = project.push({"a": "1"})[0]
    # The running called job is told to stop; the rest of that call ends at once.
    with project.db.session() as session:
        job = session.get(WorkflowJob, running)
        assert job is not None and job.cancel_requested
    assert _state(project, first) == {
        "deploy": ("waiting", None),
        "deploy / one": ("in_progress", None),
        "deploy / two": ("completed", "cancelled"),
    }
    # The new call waits until the runner acknowledges the cancellation.
    assert _state(project, second) == {"deploy": ("waiting", None)}
    _finish(project, running, "cancelled")
    assert _state(project, first)["deploy"] == ("completed", "cancelled")
    assert project.run(first).conclusion == Conclusion.CANCELLED
    assert _state(project, second)["deploy / one"] == ("queued", None)


MATRIX_CALLER = """
on: push
jobs:
  deploy:
    strategy:
      max-parallel: 1
      matrix:
        target: [a, b, c]
    uses: ./.github/workflows/called.yml
    with:
      target: ${{ matrix.target }}
"""


def test_max_parallel_on_a_calling_job_bounds_the_called_workflows_running_at_once(
    project: Project,
) -> None:
    runner_id = _runner(project)
    run_id = project.push(
        {".github/workflows/ci.yml": MATRIX_CALLER, ".github/workflows/called.yml": CALLED}
    )[0]
    # One combination's workflow runs; the other call rows have no called jobs yet.
    assert _state(project, run_id) == {
        "deploy (a)": ("waiting", None),
        "deploy (b)": ("waiting", None),
        "deploy (c)": ("waiting", None),
        "deploy (a) / one": ("queued", None),
        "deploy (a) / two": ("waiting", None),
    }
    order: list[str] = []
    for _ in range(6):
        job_id = _take_one(project, runner_id)
        # Never a job of a second combination while one combination's workflow runs.
        assert _take(project, runner_id) is None
        started = {
            name.split(" / ")[0]
            for name, job in _jobs(project, run_id).items()
            if " / " in name and job.status != JobStatus.COMPLETED
        }
        assert len(started) == 1
        order.extend(sorted(started))
        _finish(project, job_id)
    assert sorted(set(order)) == ["deploy (a)", "deploy (b)", "deploy (c)"]
    assert project.run(run_id).conclusion == Conclusion.SUCCESS
    assert {name: state for name, state in _state(project, run_id).items() if "/" not in name} == {
        "deploy (a)": ("completed", "success"),
        "deploy (b)": ("completed", "success"),
        "deploy (c)": ("completed", "success"),
    }


CALLED_WITH_GROUP = CALLED.replace(
    "jobs:\n",
    "concurrency:\n  group: called-${{ inputs.target }}\n  cancel-in-progress: false\njobs:\n",
    1,
)


def test_a_called_workflows_top_level_concurrency_governs_its_jobs_as_one_unit(
    project: Project,
) -> None:
    caller = """
name: Deploy
on: push
jobs:
  prod:
    uses: ./.github/workflows/called.yml
    with:
      target: production
  other:
    uses: ./.github/workflows/called.yml
    with:
      target: review
"""
    runner_id = _runner(project)
    files = {".github/workflows/ci.yml": caller, ".github/workflows/called.yml": CALLED_WITH_GROUP}
    first = project.push(files)[0]
    second = project.push({"a": "1"})[0]
    rows = _jobs(project, first)
    # Evaluated with the call's inputs, and held by the calling job.
    assert rows["prod"].concurrency_group == "called-production"
    assert rows["other"].concurrency_group == "called-review"
    assert rows["prod / one"].concurrency_group is None
    # In the second run, each call waits behind the same call of the first run.
    assert _state(project, second) == {"prod": ("waiting", None), "other": ("waiting", None)}
    for _ in range(4):
        _finish(project, _take_one(project, runner_id))
    assert project.run(first).conclusion == Conclusion.SUCCESS
    assert _state(project, second)["prod / one"] == ("queued", None)
    assert _state(project, second)["other / one"] == ("queued", None)
    for _ in range(4):
        _finish(project, _take_one(project, runner_id))
    assert project.run(second).conclusion == Conclusion.SUCCESS


def _caller(name: str, group: str | None, on: str = "push") -> str:
    concurrency = f"\n    concurrency: {group}" if group else ""
    return f"""
name: {name}
on: {on}
jobs:
  deploy:{concurrency}
    uses: ./.github/workflows/called.yml
    with:
      target: production
"""


def _by_path(project: Project, run_ids: list[int]) -> dict[str, int]:
    """Runs by workflow file name (`a.yml`)."""
    return {project.run(run_id).workflow_path.rsplit("/", 1)[-1]: run_id for run_id in run_ids}


def _drain(project: Project, runner_id: int, result: str = "success") -> list[int]:
    """Take and finish every job as it is queued; the run of each, in order."""
    order: list[int] = []
    while (job_id := _take(project, runner_id)) is not None:
        with project.db.session() as session:
            job = session.get(WorkflowJob, job_id)
            assert job is not None
            order.append(job.run_id)
        _finish(project, job_id, result)
    return order


def _called_group(project: Project, run_id: int) -> str | None:
    """The called workflow's group a call row holds or waits for beside its own."""
    return (_jobs(project, run_id)["deploy"].outputs or {}).get(CALLED_GROUP)


def test_both_the_calling_jobs_and_the_called_workflows_groups_apply(project: Project) -> None:
    runner_id = _runner(project)
    files = {
        ".github/workflows/a.yml": _caller("A", "a-lock"),
        ".github/workflows/b.yml": _caller("B", "b-lock"),
        ".github/workflows/called.yml": CALLED_WITH_GROUP,
    }
    runs = _by_path(project, project.push(files))
    a, b = runs["a.yml"], runs["b.yml"]
    # Both calls got their callers' groups; only one of them the called workflow's.
    assert _jobs(project, a)["deploy"].concurrency_group == "a-lock"
    assert _called_group(project, a) == "called-production"
    assert _state(project, a) == {
        "deploy": ("waiting", None),
        "deploy / one": ("queued", None),
        "deploy / two": ("waiting", None),
    }
    assert _jobs(project, b)["deploy"].concurrency_group == "b-lock"
    assert _called_group(project, b) == "called-production"
    assert _state(project, b) == {"deploy": ("waiting", None)}

    runs = _by_path(project, project.push({"x": "1"}))
    a2, b2 = runs["a.yml"], runs["b.yml"]
    # The second B waits for b-lock: the first B holds it while it waits for the called
    # workflow's group, and is not replaced (it is not pending in b-lock).
    assert _state(project, a2) == {"deploy": ("waiting", None)}
    assert _state(project, b2) == {"deploy": ("waiting", None)}
    assert _called_group(project, b2) is None
    assert _state(project, b) == {"deploy": ("waiting", None)}

    # One called workflow at a time, in the order the calls reached called-production;
    # every holder's end releases the next call.
    assert _drain(project, runner_id) == [a, a, b, b, a2, a2, b2, b2]
    for run_id in (a, b, a2, b2):
        assert project.run(run_id).conclusion == Conclusion.SUCCESS
        deploy = _jobs(project, run_id)["deploy"]
        assert (deploy.status, deploy.conclusion) == (JobStatus.COMPLETED, Conclusion.SUCCESS)
        assert deploy.outputs == {}  # neither the frame nor the second group outlives it


def test_a_call_holding_its_callers_group_is_released_by_cancel_and_failure(
    project: Project,
) -> None:
    runner_id = _runner(project)
    only_first_push = "\n  push:\n    paths: ['.github/**']"
    files = {
        ".github/workflows/a.yml": _caller("A", None, on=only_first_push),
        ".github/workflows/b.yml": _caller("B", "b-lock"),
        ".github/workflows/called.yml": CALLED_WITH_GROUP,
    }
    runs = _by_path(project, project.push(files))
    a, b = runs["a.yml"], runs["b.yml"]
    assert _state(project, b) == {"deploy": ("waiting", None)}
    [b2] = project.push({"x": "1"})
    assert _state(project, b2) == {"deploy": ("waiting", None)}
    assert _called_group(project, b2) is None  # waiting for b-lock

    # Cancelling the first B (holding b-lock, waiting for called-production) frees b-lock:
    # the second B takes it and waits for called-production in its turn.
    with project.db.session() as session:
        run = session.get(WorkflowRun, b)
        assert run is not None
        service.cancel_run(session, project.settings, run)
    assert project.run(b).conclusion == Conclusion.CANCELLED
    assert _state(project, b) == {"deploy": ("completed", "cancelled")}
    assert _state(project, b2) == {"deploy": ("waiting", None)}
    assert _called_group(project, b2) == "called-production"

    # A's called workflow fails: called-production is free, and the second B runs.
    _finish(project, _take_one(project, runner_id), "failure")
    assert project.run(a).conclusion == Conclusion.FAILURE
    assert _state(project, a)["deploy"] == ("completed", "failure")
    assert _state(project, b2)["deploy / one"] == ("queued", None)
    assert _drain(project, runner_id) == [b2, b2]
    assert project.run(b2).conclusion == Conclusion.SUCCESS


def test_the_same_group_for_caller_and_called_workflow_does_not_wait_for_itself(
    project: Project,
) -> None:
    runner_id = _runner(project)
    called = CALLED.replace("jobs:\n", "concurrency: shared\njobs:\n", 1)
    files = {
        ".github/workflows/ci.yml": _caller("Deploy", "shared"),
        ".github/workflows/called.yml": called,
    }
    [first] = project.push(files)
    # Held once, through the caller: the called jobs are added at once.
    assert _jobs(project, first)["deploy"].concurrency_group == "shared"
    assert _called_group(project, first) is None
    assert _state(project, first)["deploy / one"] == ("queued", None)
    [second] = project.push({"x": "1"})
    [third] = project.push({"x": "2"})
    assert _state(project, second) == {"deploy": ("completed", "cancelled")}
    assert _state(project, third) == {"deploy": ("waiting", None)}
    assert _drain(project, runner_id) == [first, first, third, third]
    assert project.run(third).conclusion == Conclusion.SUCCESS


def test_cancel_in_progress_of_the_called_workflows_group_cancels_the_older_call(
    project: Project,
) -> None:
    runner_id = _runner(project)
    called = CALLED.replace(
        "jobs:\n",
        "concurrency:\n  group: called-${{ inputs.target }}\n  cancel-in-progress: true\njobs:\n",
        1,
    )
    files = {
        # A group of each run's own: only the called workflow's is shared.
        ".github/workflows/ci.yml": _caller("Deploy", "caller-${{ github.sha }}"),
        ".github/workflows/called.yml": called,
    }
    [first] = project.push(files)
    running = _take_one(project, runner_id)
    [second] = project.push({"x": "1"})
    with project.db.session() as session:
        job = session.get(WorkflowJob, running)
        assert job is not None and job.cancel_requested
    assert _state(project, first) == {
        "deploy": ("waiting", None),
        "deploy / one": ("in_progress", None),
        "deploy / two": ("completed", "cancelled"),
    }
    # The new call holds its caller's group and waits until the old call's jobs ended.
    assert _state(project, second) == {"deploy": ("waiting", None)}
    assert _called_group(project, second) == "called-production"
    _finish(project, running, "cancelled")
    assert project.run(first).conclusion == Conclusion.CANCELLED
    assert _drain(project, runner_id) == [second, second]
    assert project.run(second).conclusion == Conclusion.SUCCESS


def test_cancel_in_progress_of_the_callers_group_cancels_a_call_waiting_for_the_called_one(
    project: Project,
) -> None:
    runner_id = _runner(project)
    only_first_push = "\n  push:\n    paths: ['.github/**']"
    cancelling = "\n      group: deploy\n      cancel-in-progress: true"
    files = {
        ".github/workflows/a.yml": _caller("A", None, on=only_first_push),
        ".github/workflows/b.yml": _caller("B", cancelling),
        ".github/workflows/called.yml": CALLED_WITH_GROUP,
    }
    runs = _by_path(project, project.push(files))
    a, b = runs["a.yml"], runs["b.yml"]
    # B holds `deploy` and waits for called-production, which A's call holds.
    assert _state(project, b) == {"deploy": ("waiting", None)}
    assert _called_group(project, b) == "called-production"
    [b2] = project.push({"x": "1"})
    # The newer B cancels the older one (it has no called jobs: it ends at once), takes
    # `deploy` and waits for called-production in its place.
    assert _state(project, b) == {"deploy": ("completed", "cancelled")}
    assert project.run(b).conclusion == Conclusion.CANCELLED
    assert _state(project, b2) == {"deploy": ("waiting", None)}
    assert _called_group(project, b2) == "called-production"
    assert _state(project, a)["deploy / one"] == ("queued", None)
    assert _drain(project, runner_id) == [a, a, b2, b2]
    assert project.run(b2).conclusion == Conclusion.SUCCESS


def test_a_matrix_call_waiting_for_the_called_workflows_group_counts_against_max_parallel(
    project: Project,
) -> None:
    runner_id = _runner(project)
    only_first_push = "\n  push:\n    paths: ['.github/**']"
    matrix_caller = MATRIX_CALLER.replace(
        "    uses:", "    concurrency: deploy-${{ matrix.target }}\n    uses:"
    )
    called = CALLED.replace("jobs:\n", "concurrency: called\njobs:\n", 1)
    files = {
        ".github/workflows/a.yml": _caller("A", None, on=only_first_push),
        ".github/workflows/ci.yml": matrix_caller,
        ".github/workflows/called.yml": called,
    }
    runs = _by_path(project, project.push(files))
    a, ci = runs["a.yml"], runs["ci.yml"]
    # (a) holds its caller's group and waits for `called`, held by A: it is running as far
    # as max-parallel goes, so (b) and (c) wait, and it does not keep itself waiting.
    assert _state(project, ci) == {
        "deploy (a)": ("waiting", None),
        "deploy (b)": ("waiting", None),
        "deploy (c)": ("waiting", None),
    }
    rows = _jobs(project, ci)
    assert rows["deploy (a)"].concurrency_group == "deploy-a"
    assert (rows["deploy (a)"].outputs or {}).get(CALLED_GROUP) == "called"
    assert rows["deploy (b)"].concurrency_group is None  # not evaluated yet
    order = _drain(project, runner_id)
    assert order == [a, a, ci, ci, ci, ci, ci, ci]
    assert project.run(ci).conclusion == Conclusion.SUCCESS
    assert {name: state for name, state in _state(project, ci).items() if "/" not in name} == {
        "deploy (a)": ("completed", "success"),
        "deploy (b)": ("completed", "success"),
        "deploy (c)": ("completed", "success"),
    }
