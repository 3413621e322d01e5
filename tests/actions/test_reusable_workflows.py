"""Reusable workflows (`jobs.<id>.uses`): the parser's checks with positions, and runs at the
service level (every database engine): the called jobs join the run as `caller / called`,
`with:` and `secrets:` reach them, the called workflow's outputs reach later jobs, and bad
calls fail the run with `file:line:column` errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.actions import runners, service
from opencodehub.actions.models import Conclusion, JobStatus, Runner, WorkflowJob
from opencodehub.actions.workflow import (
    WorkflowError,
    check_call,
    parse_uses,
    parse_workflow,
)
from opencodehub.db.engine import Database
from opencodehub.repos.models import Repository, Visibility
from opencodehub.runner.jobspec import JobResult, JobSpec
from tests.actions.conftest import Project
from tests.repos.git_helpers import commit_files, create_repo

CALLED = """
name: Build
on:
  workflow_call:
    inputs:
      greeting:
        type: string
        required: true
      times:
        type: number
        default: 2
      loud:
        type: boolean
    secrets:
      token:
        required: true
    outputs:
      word:
        description: what build said
        value: ${{ jobs.build.outputs.word }}
permissions:
  contents: write
  issues: write
env:
  CALLED_ENV: from-called
jobs:
  build:
    name: Compile
    runs-on: ${{ inputs.loud && 'big' || 'ubuntu-latest' }}
    outputs:
      word: ${{ steps.say.outputs.word }}
    steps:
      - id: say
        run: echo "${{ inputs.greeting }} ${{ secrets.token }}"
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ needs.build.outputs.word }}"
"""

CALLER = """
name: CI
on: push
permissions:
  contents: read
env:
  CALLER_ENV: from-caller
jobs:
  setup:
    runs-on: ubuntu-latest
    outputs:
      greeting: ${{ steps.g.outputs.greeting }}
    steps:
      - id: g
        run: echo greeting=hi >> "$GITHUB_OUTPUT"
  call:
    name: Call
    needs: setup
    uses: ./.github/workflows/build.yml
    with:
      greeting: ${{ needs.setup.outputs.greeting }}
    secrets:
      token: ${{ secrets.DEPLOY }}
  after:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ needs.call.outputs.word }}"
"""


# The parser -----------------------------------------------------------------------------------


def test_parse_uses_accepts_local_and_remote_references_only() -> None:
    local = parse_uses("./.github/workflows/build.yml")
    assert local.local and local.path == ".github/workflows/build.yml"
    remote = parse_uses("octo/lib/.github/workflows/ci.yaml@v1.2")
    assert (remote.owner, remote.repo, remote.path, remote.ref) == (
        "octo",
        "lib",
        ".github/workflows/ci.yaml",
        "v1.2",
    )
    for bad in (
        "./build.yml",  # not under .github/workflows
        "./.github/workflows/../secrets.yml",
        "octo/lib/.github/workflows/ci.yml",  # a remote reference needs @ref
        "./.github/workflows/ci.yml@main",  # a local one takes none
        "octo/lib/.github/workflows/ci.yml@-upload-pack=x",
        "octo/lib/.github/workflows/ci.yml@a..b",
        "octo/lib/.github/workflows/sub/ci.yml@main",
    ):
        with pytest.raises(ValueError, match="invalid reusable workflow reference"):
            parse_uses(bad)


def test_workflow_call_inputs_outputs_and_secrets_are_typed() -> None:
    wf = parse_workflow(".github/workflows/build.yml", CALLED)
    assert wf.call is not None
    assert {name: (i.type, i.required, i.default) for name, i in wf.call.inputs.items()} == {
        "greeting": ("string", True, None),
        "times": ("number", False, 2),
        "loud": ("boolean", False, None),
    }
    assert wf.call.outputs == {"word": "${{ jobs.build.outputs.word }}"}
    assert wf.call.secrets == {"token": True}
    times = wf.call.inputs["times"]
    assert times.coerce(None, False) == 2
    assert times.coerce("3", True) == 3
    with pytest.raises(ValueError, match="must be a number"):
        times.coerce("three", True)
    with pytest.raises(ValueError, match="must be a boolean"):
        wf.call.inputs["loud"].coerce("yes", True)
    assert wf.call.inputs["loud"].coerce(None, False) is False


def test_bad_workflow_call_definitions_are_reported_with_positions() -> None:
    text = """on:
  workflow_call:
    inputs:
      a:
        type: list
      b:
        type: number
        default: many
      c:
        required: maybe
        type: string
    outputs:
      o:
        description: no value
    secrets:
      s:
        required: 1
    extra: 1
jobs:
  j:
    runs-on: x
    steps: [{run: echo}]
"""
    with pytest.raises(WorkflowError) as info:
        parse_workflow("w.yml", text)
    messages = [str(issue) for issue in info.value.errors]
    assert messages == [
        "w.yml:5:15: input 'a' needs a 'type': boolean, number or string",
        "w.yml:8:18: the default of 'b' must be a number",
        "w.yml:10:19: 'required' must be a boolean",
        "w.yml:14:9: 'on.workflow_call.outputs.o.value' must be a string",
        "w.yml:17:19: 'required' must be a boolean",
        "w.yml:18:5: unknown key 'extra' in 'on.workflow_call'",
    ]


def test_a_calling_job_takes_only_the_keys_github_allows() -> None:
    text = """on: push
jobs:
  call:
    uses: ./.github/workflows/b.yml
    runs-on: ubuntu-latest
    steps: [{run: echo}]
    with:
      deep: {a: 1}
    secrets: everything
  plain:
    runs-on: x
    with: {a: 1}
    steps: [{run: echo}]
  bad:
    uses: somewhere/else
"""
    with pytest.raises(WorkflowError) as info:
        parse_workflow("w.yml", text)
    messages = [str(issue) for issue in info.value.errors]
    assert messages == [
        "w.yml:5:5: 'runs-on' is not allowed in a job that calls a reusable workflow",
        "w.yml:6:5: 'steps' is not allowed in a job that calls a reusable workflow",
        "w.yml:8:13: input 'deep' must be a string, number or boolean",
        "w.yml:9:14: 'jobs.call.secrets' must be a mapping",
        "w.yml:12:5: 'with' is only valid in a job with 'uses'",
        "w.yml:15:11: invalid reusable workflow reference 'somewhere/else': use "
        "./.github/workflows/FILE.yml or OWNER/REPO/.github/workflows/FILE.yml@REF",
    ]


def test_check_call_finds_unknown_missing_and_mistyped_inputs_and_secrets() -> None:
    called = parse_workflow("b.yml", CALLED)
    caller = parse_workflow(
        "c.yml",
        """on: push
jobs:
  call:
    uses: ./.github/workflows/b.yml
    with:
      colour: red
      times: many
    secrets:
      other: x
""",
    )
    issues = [str(i) for i in check_call(caller, caller.jobs["call"], called, "b.yml")]
    assert issues == [
        "c.yml:6:7: unknown input 'colour' of 'b.yml'",
        "c.yml:7:14: input 'times' must be a number, got 'many'",
        "c.yml:4:11: input 'greeting' of 'b.yml' is required",
        "c.yml:9:7: unknown secret 'other' of 'b.yml'",
        "c.yml:4:11: secret 'token' of 'b.yml' is required",
    ]
    plain = parse_workflow(
        "p.yml", "on: push\njobs:\n  j:\n    runs-on: x\n    steps: [{run: a}]\n"
    )
    assert [str(i) for i in check_call(caller, caller.jobs["call"], plain, "p.yml")] == [
        "c.yml:4:11: 'p.yml' is not a reusable workflow: it has no 'on.workflow_call'"
    ]
    inherit = parse_workflow(
        "i.yml",
        "on: push\njobs:\n  call:\n    uses: ./.github/workflows/b.yml\n"
        "    with: {greeting: hi}\n    secrets: inherit\n",
    )
    assert check_call(inherit, inherit.jobs["call"], called, "b.yml") == []


# Runs -------------------------------------------------------------------------------------------


def _runner(project: Project, labels: list[str] | None = None) -> int:
    with project.db.session() as session:
        runner, _ = runners.register_runner(
            session, project.registration_token(), "r", labels or ["ubuntu-latest"]
        )
        return runner.id


def _take(
    project: Project, runner_id: int, result: str = "success", **outputs: str
) -> tuple[str, JobSpec]:
    with project.db.session() as session:
        runner = session.get(Runner, runner_id)
        assert runner is not None
        job = service.claim_from_database(session, runner)
        assert job is not None, "no job was queued"
        spec = service.start_job(session, project.settings, job)
        service.complete_job(
            session, project.settings, job, JobResult(result=result, outputs=outputs)
        )
        return job.name, spec


def _set_secret(project: Project, name: str, value: str) -> None:
    from opencodehub.accounts.actor import Actor

    with project.db.session() as session:
        owner = session.get(User, project.owner.id)
        repo = session.get(Repository, project.repo.id)
        assert owner is not None and repo is not None
        service.set_secret(
            session, project.settings, Actor(user=owner, method="password"), repo, name, value
        )


def _rows(project: Project, run_id: int) -> list[WorkflowJob]:
    with project.db.session() as session:
        jobs = session.scalars(
            select(WorkflowJob).where(WorkflowJob.run_id == run_id).order_by(WorkflowJob.id)
        ).all()
        for job in jobs:
            session.expunge(job)
        return list(jobs)


def test_a_local_reusable_workflow_runs_with_inputs_secrets_and_outputs(
    project: Project,
) -> None:
    _set_secret(project, "DEPLOY", "s3cr3t")
    [run_id] = project.push(
        {".github/workflows/ci.yml": CALLER, ".github/workflows/build.yml": CALLED}
    )
    runner = _runner(project)
    name, _ = _take(project, runner, greeting="hello")
    assert name == "setup"
    # The called jobs joined the run once `setup` was done, named as GitHub names them.
    name, build = _take(project, runner, word="bird")
    assert name == "Call / Compile"
    assert build.job_key == "call/build"
    assert build.contexts.github["job"] == "build"
    assert build.contexts.inputs == {"greeting": "hello", "times": 2, "loud": False}
    assert build.contexts.secrets.keys() == {"token", "GITHUB_TOKEN"}
    assert build.contexts.secrets["token"] == "s3cr3t"
    # The called workflow's env, not the caller's; the caller's run and event.
    assert build.workflow_env == {"CALLED_ENV": "from-called"}
    assert build.workflow_name == "CI"
    assert build.job["runs-on"] == "${{ inputs.loud && 'big' || 'ubuntu-latest' }}"
    name, test = _take(project, runner)
    assert name == "Call / test"
    assert test.contexts.needs == {"build": {"result": "success", "outputs": {"word": "bird"}}}
    name, after = _take(project, runner)
    assert name == "after"
    assert after.contexts.needs == {"call": {"result": "success", "outputs": {"word": "bird"}}}
    assert after.contexts.secrets.keys() == {"DEPLOY", "GITHUB_TOKEN"}
    run = project.run(run_id)
    assert run.conclusion == Conclusion.SUCCESS
    rows = {job.job_key: job for job in _rows(project, run_id)}
    # The called jobs' token never gets more than the calling job's (`contents: read`).
    assert rows["call/build"].permissions == {"contents": "read", "metadata": "read"}
    # The call row holds the outputs, and no trace of the secrets it passed.
    assert rows["call"].outputs == {"word": "bird"}
    assert rows["call"].status == JobStatus.COMPLETED
    with project.db.session() as session:
        listed = service.run_jobs(session, project.run(run_id))
        # In the order they were made: the called jobs when `setup` was done.
        assert [job.name for job in listed] == ["setup", "after", "Call / Compile", "Call / test"]


def test_a_failing_called_job_fails_the_call_and_skips_what_needs_it(project: Project) -> None:
    _set_secret(project, "DEPLOY", "x")
    [run_id] = project.push(
        {".github/workflows/ci.yml": CALLER, ".github/workflows/build.yml": CALLED}
    )
    runner = _runner(project)
    _take(project, runner, greeting="hi")
    assert _take(project, runner, "failure")[0] == "Call / Compile"
    run = project.run(run_id)
    assert run.conclusion == Conclusion.FAILURE
    conclusions = {job.job_key: job.conclusion for job in _rows(project, run_id)}
    assert conclusions == {
        "setup": Conclusion.SUCCESS,
        "call": Conclusion.FAILURE,
        "call/build": Conclusion.FAILURE,
        "call/test": Conclusion.SKIPPED,
        "after": Conclusion.SKIPPED,
    }


def test_a_matrix_caller_calls_once_per_combination_with_inherited_secrets(
    project: Project,
) -> None:
    _set_secret(project, "TOKEN", "t0k")
    caller = """
name: CI
on: push
jobs:
  call:
    strategy:
      matrix:
        greeting: [hi, hello]
    uses: ./.github/workflows/build.yml
    with:
      greeting: ${{ matrix.greeting }}
      loud: false
    secrets: inherit
"""
    called = CALLED.replace("token:\n        required: true", "TOKEN:\n        required: true")
    called = called.replace("secrets.token", "secrets.TOKEN")
    [run_id] = project.push(
        {".github/workflows/ci.yml": caller, ".github/workflows/build.yml": called}
    )
    runner = _runner(project)
    # The order in which the four jobs are taken is the queue's; each combination's `test`
    # comes after its own `build`, and sees that build's output only.
    taken: dict[str, JobSpec] = {}
    for _ in range(4):
        with project.db.session() as session:
            runner_row = session.get(Runner, runner)
            assert runner_row is not None
            job = service.claim_from_database(session, runner_row)
            assert job is not None
            spec = service.start_job(session, project.settings, job)
            word = "a" if "(hi)" in job.name else "b"
            result = JobResult(result="success", outputs={"word": word})
            service.complete_job(session, project.settings, job, result)
            taken[job.name] = spec
    assert set(taken) == {
        "call (hi) / Compile",
        "call (hello) / Compile",
        "call (hi) / test",
        "call (hello) / test",
    }
    assert taken["call (hi) / Compile"].contexts.inputs["greeting"] == "hi"
    assert taken["call (hello) / Compile"].contexts.inputs["greeting"] == "hello"
    assert taken["call (hi) / Compile"].contexts.secrets["TOKEN"] == "t0k"
    assert taken["call (hi) / test"].contexts.needs["build"]["outputs"] == {"word": "a"}
    assert taken["call (hello) / test"].contexts.needs["build"]["outputs"] == {"word": "b"}
    assert project.run(run_id).conclusion == Conclusion.SUCCESS


def test_nested_calls_pass_inputs_down_and_the_fifth_level_is_refused(
    project: Project,
) -> None:
    def level(n: int, calls: int | None) -> str:
        body = (
            f"    uses: ./.github/workflows/l{calls}.yml\n    with:\n"
            f"      depth: ${{{{ inputs.depth }}}}-{n}\n"
            if calls
            else "    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ inputs.depth }}\n"
        )
        return (
            f"on:\n  workflow_call:\n    inputs:\n      depth:\n        type: string\n"
            f"jobs:\n  j{n}:\n{body}"
        )

    files = {
        ".github/workflows/ci.yml": "on: push\njobs:\n  top:\n"
        "    uses: ./.github/workflows/l1.yml\n    with:\n      depth: t\n",
        ".github/workflows/l1.yml": level(1, 2),
        ".github/workflows/l2.yml": level(2, 3),
        ".github/workflows/l3.yml": level(3, None),
    }
    [run_id] = project.push(files)
    name, spec = _take(project, _runner(project))
    assert name == "top / j1 / j2 / j3"
    assert spec.contexts.inputs == {"depth": "t-1-2"}
    assert project.run(run_id).conclusion == Conclusion.SUCCESS

    files[".github/workflows/l3.yml"] = level(3, 4)
    files[".github/workflows/l4.yml"] = level(4, None)
    [run_id] = project.push(files)
    run = project.run(run_id)
    assert run.conclusion == Conclusion.FAILURE
    assert run.error == (
        ".github/workflows/l3.yml:8:11: reusable workflows nest at most 4 levels deep "
        "(the calling workflow and three below it)"
    )


def test_bad_calls_fail_the_run_with_positions(project: Project) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        (
            {"ci.yml": "on: push\njobs:\n  c:\n    uses: ./.github/workflows/gone.yml\n"},
            ".github/workflows/ci.yml:4:11: './.github/workflows/gone.yml': workflow file "
            "'.github/workflows/gone.yml' was not found",
        ),
        (
            {
                "ci.yml": "on: push\njobs:\n  c:\n    uses: ./.github/workflows/build.yml\n"
                "    with:\n      greeting: hi\n      nope: 1\n    secrets:\n      token: x\n",
                "build.yml": CALLED,
            },
            ".github/workflows/ci.yml:7:7: unknown input 'nope' of '.github/workflows/build.yml'",
        ),
        (
            {
                "ci.yml": "on: push\njobs:\n  c:\n    uses: ./.github/workflows/build.yml\n"
                "    secrets: inherit\n",
                "build.yml": CALLED,
            },
            ".github/workflows/ci.yml:4:11: input 'greeting' of '.github/workflows/build.yml' "
            "is required",
        ),
        (
            {
                "ci.yml": "on: push\njobs:\n  c:\n    uses: ./.github/workflows/a.yml\n",
                "a.yml": "on: workflow_call\njobs:\n  a:\n    uses: ./.github/workflows/b.yml\n",
                "b.yml": "on: workflow_call\njobs:\n  b:\n    uses: ./.github/workflows/a.yml\n",
            },
            ".github/workflows/b.yml:4:11: './.github/workflows/a.yml' calls a workflow that "
            "is already calling it (a cycle)",
        ),
        (
            {
                "ci.yml": "on: push\njobs:\n  c:\n    uses: ./.github/workflows/bad.yml\n",
                "bad.yml": "on: workflow_call\njobs:\n  x:\n    runs-on: a\n    steps: []\n",
            },
            ".github/workflows/bad.yml:5:12: job 'x' needs a non-empty list of 'steps'",
        ),
    ]
    for files, error in cases:
        run_ids = project.push({f".github/workflows/{n}": text for n, text in files.items()})
        # (An invalid called file also fails a run of its own, as any invalid workflow file.)
        [run] = [
            project.run(run_id)
            for run_id in run_ids
            if project.run(run_id).workflow_path == ".github/workflows/ci.yml"
        ]
        run_id = run.id
        assert run.conclusion == Conclusion.FAILURE
        assert run.error == error
        assert _rows(project, run_id) == []


def test_cross_repository_calls_follow_what_the_run_may_read(
    project: Project, db: Database, make_user: Callable[..., Any]
) -> None:
    other = make_user("lib-owner")
    public = create_repo(db, project.settings, other, "shared")
    private = create_repo(
        db, project.settings, project.owner, "hidden", visibility=Visibility.PRIVATE
    )
    for repo in (public, private):
        commit_files(
            project.settings,
            repo,
            {".github/workflows/build.yml": CALLED.encode()},
            branch="main",
            message="lib",
        )
    caller = """on: push
jobs:
  call:
    uses: {target}/.github/workflows/build.yml@main
    with:
      greeting: hi
    secrets:
      token: x
"""
    [run_id] = project.push({".github/workflows/ci.yml": caller.format(target="lib-owner/shared")})
    runner = _runner(project)
    name, spec = _take(project, runner)
    assert name == "call / Compile"
    assert spec.contexts.secrets["token"] == "x"
    assert _take(project, runner)[0] == "call / test"
    assert project.run(run_id).conclusion == Conclusion.SUCCESS

    # A private repository is not readable by another repository's job token, even of the
    # same owner: the run fails without telling whether it exists.
    for target in ("octo/hidden", "octo/nothing-here"):
        [run_id] = project.push({".github/workflows/ci.yml": caller.format(target=target)})
        run = project.run(run_id)
        assert run.conclusion == Conclusion.FAILURE
        assert run.error == (
            f".github/workflows/ci.yml:4:11: '{target}/.github/workflows/build.yml@main': "
            f"repository '{target}' was not found, or octo/demo may not read it"
        )
    [run_id] = project.push(
        {
            ".github/workflows/ci.yml": caller.format(target="lib-owner/shared").replace(
                "@main", "@no-such-ref"
            )
        }
    )
    assert project.run(run_id).error == (
        ".github/workflows/ci.yml:4:11: 'lib-owner/shared/.github/workflows/build.yml"
        "@no-such-ref': no branch, tag or commit 'no-such-ref' in lib-owner/shared"
    )


def test_a_rerun_calls_the_workflow_again(project: Project) -> None:
    from opencodehub.accounts.actor import Actor
    from opencodehub.actions.models import WorkflowRun

    _set_secret(project, "DEPLOY", "x")
    [run_id] = project.push(
        {".github/workflows/ci.yml": CALLER, ".github/workflows/build.yml": CALLED}
    )
    runner = _runner(project)
    for _ in range(4):
        _take(project, runner, greeting="hi", word="w")
    with project.db.session() as session:
        owner = session.get(User, project.owner.id)
        run = session.get(WorkflowRun, run_id)
        assert owner is not None and run is not None
        service.rerun(session, project.settings, Actor(user=owner, method="password"), run)
    names = [_take(project, runner, greeting="hi", word="w")[0] for _ in range(4)]
    assert names == ["setup", "Call / Compile", "Call / test", "after"]
    assert project.run(run_id).conclusion == Conclusion.SUCCESS


def test_a_local_run_refuses_a_calling_job_with_its_position(tmp_path: Any) -> None:
    from opencodehub.actions.localrun import run_workflow

    path = tmp_path / ".github" / "workflows" / "ci.yml"
    path.parent.mkdir(parents=True)
    path.write_text(CALLER)
    with pytest.raises(WorkflowError) as info:
        run_workflow(path, root=tmp_path)
    assert [str(issue) for issue in info.value.errors] == [
        ".github/workflows/ci.yml:19:11: reusable workflows (job-level 'uses') run on the "
        "server only, not in a local run"
    ]
