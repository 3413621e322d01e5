"""Parsing and validating workflow files, with positions for every error."""

from __future__ import annotations

import textwrap

import pytest

from opencodehub.actions.workflow import WorkflowError, parse_workflow

FULL = textwrap.dedent(
    """\
    name: CI
    run-name: Deploy by ${{ github.actor }}
    on:
      push:
        branches: [main, 'releases/**', '!releases/**-alpha']
        tags: ['v*']
        paths: ['src/**', '!src/docs/**']
      pull_request:
        types: [opened, synchronize]
        branches: [main]
        paths-ignore: ['**.md']
      workflow_dispatch:
        inputs:
          level:
            type: choice
            options: [info, debug]
            default: info
          dry:
            type: boolean
            default: true
          count:
            type: number
            required: true
      schedule:
        - cron: '30 5 * * 1-5'
    env:
      GLOBAL: "1"
    defaults:
      run:
        shell: bash
        working-directory: src
    concurrency:
      group: ci-${{ github.ref }}
      cancel-in-progress: true
    permissions:
      contents: read
      pull-requests: write
    jobs:
      build:
        name: Build ${{ matrix.os }}
        runs-on: [self-hosted, linux]
        timeout-minutes: 10
        continue-on-error: ${{ matrix.experimental }}
        strategy:
          fail-fast: false
          max-parallel: 2
          matrix:
            os: [a, b]
            include:
              - os: c
                experimental: true
            exclude:
              - os: b
        outputs:
          version: ${{ steps.v.outputs.version }}
        container:
          image: node:20
          env: {A: b}
        services:
          redis:
            image: redis:7
        steps:
          - id: v
            name: Version
            if: ${{ always() }}
            run: echo "version=1" >> "$GITHUB_OUTPUT"
            shell: bash
            working-directory: sub
            env: {X: "1"}
            continue-on-error: true
            timeout-minutes: 2
          - uses: actions/checkout@v4
            with:
              fetch-depth: 0
      deploy:
        needs: build
        if: github.ref == 'refs/heads/main'
        runs-on:
          group: prod
          labels: [deployer]
        steps:
          - run: echo ${{ needs.build.outputs.version }}
    """
)


def test_full_workflow_parses() -> None:
    wf = parse_workflow(".github/workflows/ci.yml", FULL)
    assert wf.name == "CI"
    assert wf.run_name == "Deploy by ${{ github.actor }}"
    assert list(wf.events) == ["push", "pull_request", "workflow_dispatch", "schedule"]
    assert wf.push is not None and wf.push.tags == ["v*"]
    assert wf.pull_request is not None and wf.pull_request.types == ["opened", "synchronize"]
    assert wf.dispatch_inputs is not None
    assert wf.dispatch_inputs["level"].options == ["info", "debug"]
    assert wf.dispatch_inputs["dry"].default is True
    assert wf.dispatch_inputs["count"].required is True
    assert wf.schedules == ["30 5 * * 1-5"]
    assert wf.env == {"GLOBAL": "1"}
    assert wf.defaults["run"]["shell"] == "bash"
    assert wf.concurrency is not None and wf.concurrency.cancel_in_progress is True
    assert wf.permissions == {"contents": "read", "pull-requests": "write"}
    build, deploy = wf.jobs["build"], wf.jobs["deploy"]
    assert build.runs_on_labels == ["self-hosted", "linux"]
    assert build.timeout_minutes == 10
    assert build.continue_on_error == "${{ matrix.experimental }}"
    assert build.strategy is not None and build.strategy["max-parallel"] == 2
    assert build.outputs == {"version": "${{ steps.v.outputs.version }}"}
    assert build.container == {"image": "node:20", "env": {"A": "b"}}
    assert build.services == {"redis": {"image": "redis:7"}}
    step = build.steps[0]
    assert (step.id, step.name, step.shell, step.working_directory) == (
        "v",
        "Version",
        "bash",
        "sub",
    )
    assert step.continue_on_error is True and step.timeout_minutes == 2
    assert build.steps[1].uses == "actions/checkout@v4"
    assert build.steps[1].with_ == {"fetch-depth": 0}
    assert build.steps[1].display_name == "Run actions/checkout@v4"
    assert deploy.needs == ["build"]
    assert deploy.runs_on_group == "prod" and deploy.runs_on_labels == ["deployer"]
    assert wf.job_levels() == [["build"], ["deploy"]]


def test_push_filters() -> None:
    wf = parse_workflow("ci.yml", FULL)
    assert wf.matches_push("refs/heads/main", ["src/a.py"])
    assert wf.matches_push("refs/heads/releases/1.0", ["src/a.py"])
    assert not wf.matches_push("refs/heads/releases/1.0-alpha", ["src/a.py"])
    assert not wf.matches_push("refs/heads/dev", ["src/a.py"])
    assert not wf.matches_push("refs/heads/main", ["src/docs/x.md"])
    assert wf.matches_push("refs/heads/main", ["src/docs/x.md", "src/b.py"])
    # Path filters do not apply to tags.
    assert wf.matches_push("refs/tags/v1.0", ["README"])
    assert not wf.matches_push("refs/tags/release-1", [])
    assert wf.matches_pull_request("opened", "refs/heads/main", ["a.py"])
    assert not wf.matches_pull_request("opened", "refs/heads/main", ["README.md", "x/y.md"])
    assert not wf.matches_pull_request("closed", "refs/heads/main", ["a.py"])
    assert not wf.matches_pull_request("opened", "refs/heads/dev", ["a.py"])


@pytest.mark.parametrize(
    ("on", "event", "ref", "expected"),
    [
        ("push", "push", "refs/heads/any", True),
        ("[push, pull_request]", "push", "refs/tags/v1", True),
        ("{push: {tags: ['v*']}}", "push", "refs/heads/main", False),
        ("{push: {branches: [main]}}", "push", "refs/tags/v1", False),
        ("{push: {branches-ignore: ['wip/*']}}", "push", "refs/heads/wip/x", False),
        ("{push: {branches-ignore: ['wip/*']}}", "push", "refs/heads/wip/x/y", True),
        ("{push: {tags-ignore: ['v1.*']}}", "push", "refs/tags/v2.0", True),
        ("pull_request", "push", "refs/heads/main", False),
    ],
)
def test_on_forms(on: str, event: str, ref: str, expected: bool) -> None:
    wf = parse_workflow(
        "w.yml", f"on: {on}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: 'true'\n"
    )
    assert wf.matches_push(ref, None) is expected


def test_whole_expressions() -> None:
    wf = parse_workflow(
        "w.yml",
        "on: push\njobs:\n  a:\n    runs-on: x\n    env: ${{ fromJSON(vars.E) }}\n"
        "    strategy: ${{ fromJSON(vars.S) }}\n    steps: [{run: x}]\n",
    )
    assert wf.jobs["a"].env == "${{ fromJSON(vars.E) }}"
    assert wf.jobs["a"].strategy == "${{ fromJSON(vars.S) }}"
    with pytest.raises(WorkflowError, match="'env' must be a mapping"):
        parse_workflow(
            "w.yml", "on: push\nenv: ${{ vars.E }}\njobs: {a: {runs-on: x, steps: [{run: x}]}}\n"
        )


def test_yaml_on_is_not_a_boolean() -> None:
    wf = parse_workflow("w.yml", "'on': push\njobs: {a: {runs-on: x, steps: [{run: 'true'}]}}\n")
    assert list(wf.events) == ["push"]
    wf = parse_workflow("w.yml", "on: [push]\njobs: {a: {runs-on: x, steps: [{run: 'yes'}]}}\n")
    assert wf.jobs["a"].steps[0].run == "yes"


def errors(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(WorkflowError) as info:
        parse_workflow("bad.yml", textwrap.dedent(text))
    assert all(e.file == "bad.yml" for e in info.value.errors)
    return [(e.line, e.column, e.message) for e in info.value.errors]


def test_unknown_keys_and_positions() -> None:
    found = errors(
        """\
        on: push
        jobs:
          a:
            runs-on: x
            stpes: []
            steps:
              - run: echo
                wiht: {}
        """
    )
    assert (5, 5, "unknown key 'stpes' in 'jobs.a'") in found
    assert (8, 9, "unknown key 'wiht' in 'jobs.a.steps.0'") in found


def test_needs_missing_and_cyclic() -> None:
    found = errors(
        """\
        on: push
        jobs:
          a:
            needs: [c]
            runs-on: x
            steps: [{run: 'true'}]
          b:
            needs: [a, ghost]
            runs-on: x
            steps: [{run: 'true'}]
          c:
            needs: b
            runs-on: x
            steps: [{run: 'true'}]
        """
    )
    messages = [m for _, _, m in found]
    assert "job 'b' needs unknown job 'ghost'" in messages
    assert any(m.startswith("cyclic needs:") for m in messages)
    assert (8, 16, "job 'b' needs unknown job 'ghost'") in found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the workflow file is empty"),
        ("on: push\njobs: [\n", "invalid YAML"),
        ("- a\n- b\n", "a workflow must be a mapping"),
        ("jobs: {a: {runs-on: x, steps: [{run: 'true'}]}}\n", "a workflow needs 'on'"),
        ("on: push\n", "a workflow needs a mapping of 'jobs'"),
        ("on: pushh\njobs: {a: {runs-on: x, steps: [{run: 'true'}]}}\n", "unknown event 'pushh'"),
        ("on: push\njobs: {a: {steps: [{run: 'true'}]}}\n", "job 'a' needs 'runs-on'"),
        ("on: push\njobs: {a: {runs-on: x}}\n", "needs a non-empty list of 'steps'"),
        (
            "on: push\njobs: {a: {runs-on: x, steps: [{name: n}]}}\n",
            "exactly one of 'run' or 'uses'",
        ),
        ("on: push\njobs: {'a b': {runs-on: x, steps: [{run: 'true'}]}}\n", "invalid job id"),
        (
            "on: {schedule: [{cron: '61 * * * *'}]}\njobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "invalid cron expression",
        ),
        (
            "on: {push: {branches: [a], branches-ignore: [b]}}\n"
            "jobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "cannot be used together",
        ),
        (
            "on: {workflow_dispatch: {inputs: {x: {type: color}}}}\n"
            "jobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "unknown input type 'color'",
        ),
        (
            "on: {workflow_dispatch: {inputs: {x: {type: choice, options: [a], default: b}}}}\n"
            "jobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "invalid default",
        ),
        (
            "on: push\njobs: {a: {runs-on: x, steps: [{run: 'echo ${{ nope( }}'}]}}\n",
            "invalid expression",
        ),
        (
            "on: push\njobs: {a: {runs-on: x, if: 'a ==', steps: [{run: x}]}}\n",
            "invalid expression",
        ),
        (
            "on: push\njobs: {a: {runs-on: x, timeout-minutes: soon, steps: [{run: x}]}}\n",
            "must be a number",
        ),
        (
            "on: push\njobs: {a: {runs-on: x, steps: [{id: s, run: x}, {id: s, run: y}]}}\n",
            "duplicate step id 's'",
        ),
        (
            "on: push\non: pull_request\njobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "duplicate key",
        ),
        (
            "on: push\npermissions: {contents: admin}\n"
            "jobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "must be read, write or none",
        ),
        (
            "on: push\njobs: {a: {runs-on: x, strategy: {matrix: {os: []}}, steps: [{run: x}]}}\n",
            "must not be empty",
        ),
        (
            "on: {pull_request: {types: [opend]}}\njobs: {a: {runs-on: x, steps: [{run: x}]}}\n",
            "unknown pull_request type",
        ),
    ],
)
def test_bad_workflows(text: str, message: str) -> None:
    found = errors(text)
    assert any(message in m for _, _, m in found), found
    assert all(line >= 1 and col >= 1 for line, col, _ in found)


def test_dispatch_input_coercion() -> None:
    wf = parse_workflow("ci.yml", FULL)
    assert wf.dispatch_inputs is not None
    inputs = wf.dispatch_inputs
    assert inputs["dry"].coerce("false") is False
    assert inputs["count"].coerce("3") == 3
    assert inputs["level"].coerce(None) == "info"
    with pytest.raises(ValueError, match="one of"):
        inputs["level"].coerce("trace")
    with pytest.raises(ValueError, match="required"):
        inputs["count"].coerce(None)
    with pytest.raises(ValueError, match="number"):
        inputs["count"].coerce("many")
