"""The job engine on the host executor: steps, shells, env, files, commands, status, outputs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from opencodehub.runner.engine import run_job
from opencodehub.runner.executors.base import build_executor
from tests.runner.conftest import RecordingReporter, make_spec, run


def test_steps_env_precedence_and_files(tmp_path: Path) -> None:
    ran = run(
        """
        env: {LEVEL: job, JOBONLY: j}
        outputs:
          greeting: ${{ steps.a.outputs.greeting }}
          multi: ${{ steps.a.outputs.multi }}
        steps:
          - id: a
            env: {LEVEL: step}
            run: |
              echo "level=$LEVEL wf=$WF job=$JOBONLY"
              echo "greeting=hello" >> "$GITHUB_OUTPUT"
              { echo "multi<<EOF"; echo "line 1"; echo "line 2"; echo "EOF"; } >> "$GITHUB_OUTPUT"
              echo "FROM_FILE=yes" >> "$GITHUB_ENV"
              mkdir -p "$RUNNER_TEMP/bin"
              printf '#!/bin/sh\\necho tool ran\\n' > "$RUNNER_TEMP/bin/mytool"
              chmod +x "$RUNNER_TEMP/bin/mytool" && echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
              echo "## Summary" >> "$GITHUB_STEP_SUMMARY"
          - run: |
              echo "level=$LEVEL file=$FROM_FILE"
              mytool
              echo "out=${{ steps.a.outputs.greeting }}"
        """,
        tmp_path,
        workflow_env={"LEVEL": "workflow", "WF": "w"},
    )
    assert ran.result.result == "success", ran.text
    assert "level=step wf=w job=j" in ran.reporter.step_lines(0)
    assert ran.reporter.step_lines(1)[-3:] == ["level=job file=yes", "tool ran", "out=hello"]
    assert ran.result.outputs == {"greeting": "hello", "multi": "line 1\nline 2"}
    assert ran.result.steps[0].outputs["greeting"] == "hello"
    assert ran.result.summary == "## Summary\n"


def test_default_environment(tmp_path: Path) -> None:
    ran = run(
        """
        steps:
          - run: |
              for v in CI GITHUB_ACTIONS GITHUB_SHA GITHUB_REF GITHUB_REF_NAME GITHUB_REF_TYPE \\
                GITHUB_REPOSITORY GITHUB_REPOSITORY_OWNER GITHUB_RUN_ID GITHUB_RUN_NUMBER \\
                GITHUB_RUN_ATTEMPT GITHUB_JOB GITHUB_EVENT_NAME GITHUB_ACTOR GITHUB_WORKFLOW \\
                RUNNER_OS RUNNER_ARCH RUNNER_NAME; do eval "echo $v=\\$$v"; done
              test -d "$GITHUB_WORKSPACE" && test "$PWD" = "$GITHUB_WORKSPACE" && echo ws-ok
              test -d "$RUNNER_TEMP" && test -d "$RUNNER_TOOL_CACHE" && echo dirs-ok
              cat "$GITHUB_EVENT_PATH"
        """,
        tmp_path,
    )
    lines = ran.reporter.step_lines(0)
    for expected in [
        "CI=true",
        "GITHUB_ACTIONS=true",
        f"GITHUB_SHA={'a' * 40}",
        "GITHUB_REF=refs/heads/main",
        "GITHUB_REF_NAME=main",
        "GITHUB_REF_TYPE=branch",
        "GITHUB_REPOSITORY=alice/project",
        "GITHUB_REPOSITORY_OWNER=alice",
        "GITHUB_RUN_ID=42",
        "GITHUB_RUN_NUMBER=3",
        "GITHUB_RUN_ATTEMPT=1",
        "GITHUB_JOB=build",
        "GITHUB_EVENT_NAME=push",
        "GITHUB_ACTOR=alice",
        "GITHUB_WORKFLOW=CI",
        "RUNNER_OS=Linux",
        "ws-ok",
        "dirs-ok",
    ]:
        assert expected in lines, (expected, lines)
    assert json.loads(lines[-1]) == {"ref": "refs/heads/main"}


def test_status_functions_and_continue_on_error(tmp_path: Path) -> None:
    ran = run(
        """
        steps:
          - run: exit 3
            continue-on-error: true
          - run: echo still running
          - run: exit 1
          - run: echo skipped by implicit success
          - if: failure()
            run: echo on failure
          - if: always()
            run: echo always
          - if: success()
            run: echo not me
          - if: ${{ cancelled() }}
            run: echo not cancelled
        """,
        tmp_path,
    )
    assert ran.result.result == "failure"
    assert ran.outcomes == [
        ("failure", "success"),
        ("success", "success"),
        ("failure", "failure"),
        ("skipped", "skipped"),
        ("success", "success"),
        ("success", "success"),
        ("skipped", "skipped"),
        ("skipped", "skipped"),
    ]
    assert "##[error]Process completed with exit code 3." in ran.reporter.step_lines(0)


def test_shells(tmp_path: Path) -> None:
    ran = run(
        """
        steps:
          - run: false | true; echo "default shell has no pipefail"
          - shell: bash
            run: false | true
            continue-on-error: true
          - shell: sh
            run: echo "sh $0"
          - shell: python
            run: |
              import sys
              print("python", sys.version_info[0])
          - shell: perl {0}
            run: print "perl says hi\\n";
          - shell: nosuchshell {0}
            run: echo
            continue-on-error: true
          - shell: bogus
            run: echo
            continue-on-error: true
        """,
        tmp_path,
    )
    assert [s.outcome for s in ran.result.steps] == [
        "success", "failure", "success", "success", "success", "failure", "failure",
    ]  # fmt: skip
    assert "python 3" in ran.reporter.step_lines(3)
    assert "perl says hi" in ran.reporter.step_lines(4)
    assert any("'nosuchshell' is not available" in line for line in ran.reporter.step_lines(5))
    assert any("invalid shell 'bogus'" in line for line in ran.reporter.step_lines(6))


def test_workflow_commands_and_masking(tmp_path: Path) -> None:
    ran = run(
        """
        steps:
          - run: |
              echo "secret is ${{ secrets.TOKEN }}"
              echo "::add-mask::dynamic-value"
              echo "now dynamic-value is hidden"
              echo "::group::My group"
              echo "inside"
              echo "::endgroup::"
              echo "::error file=app.py,line=12,title=T::broken%0Athing"
              echo "::warning::careful"
              echo "::notice file=x.md::fyi"
              echo "::debug::dbg"
              echo "::stop-commands::pause123"
              echo "::warning::not a command now"
              echo "::pause123::"
              echo "::warning::a command again"
        """,
        tmp_path,
        contexts={"secrets": {"TOKEN": "s3cr3t-v4lue"}},
    )
    lines = ran.reporter.step_lines(0)
    assert "secret is ***" in lines
    assert "now *** is hidden" in lines
    assert not any("s3cr3t-v4lue" in line for line in ran.reporter.lines)
    # The script is shown before it runs; from the add-mask command on, the value is hidden.
    after = lines[lines.index("::add-mask::***") :]
    assert not any("dynamic-value" in line for line in after)
    assert "##[group]My group" in lines and "##[endgroup]" in lines
    assert "##[debug]dbg" in lines
    assert "::warning::not a command now" in lines
    assert ran.reporter.annotations == [
        ("error", "broken\nthing", "app.py", 12),
        ("warning", "careful", None, None),
        ("notice", "fyi", "x.md", None),
        ("warning", "a command again", None, None),
    ]


def test_outputs_with_secrets_are_dropped(tmp_path: Path) -> None:
    ran = run(
        """
        outputs: {leak: "${{ secrets.TOKEN }}", fine: "ok"}
        steps: [{run: "true"}]
        """,
        tmp_path,
        contexts={"secrets": {"TOKEN": "hunter2hunter2"}},
    )
    assert ran.result.outputs == {"fine": "ok"}


def test_step_timeout_and_working_directory(tmp_path: Path) -> None:
    ran = run(
        """
        defaults: {run: {working-directory: sub}}
        steps:
          - run: mkdir -p sub
            working-directory: .
          - run: pwd
          - run: sleep 30
            timeout-minutes: 0.02
          - if: always()
            run: echo after
        """,
        tmp_path,
    )
    assert ran.reporter.step_lines(1)[-1].endswith("/workspace/sub")
    assert ran.outcomes[2] == ("failure", "failure")
    assert "##[error]The action has timed out." in ran.reporter.step_lines(2)
    assert ran.outcomes[3] == ("success", "success")


def test_cancel_kills_process_group(tmp_path: Path) -> None:
    cancel = threading.Event()
    reporter = RecordingReporter()
    marker = tmp_path / "child.pid"
    spec = make_spec(
        f"""
        steps:
          - run: |
              sleep 300 &
              echo $! > {marker}
              echo started
              wait
          - run: echo never
          - if: always()
            run: echo cleanup
        """
    )
    result: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            r=run_job(spec, build_executor("host"), reporter, cancel, tmp_path / "job")
        )
    )
    thread.start()
    deadline = time.monotonic() + 30
    while "started" not in reporter.lines and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel.set()
    thread.join(60)
    job = result["r"]
    assert job.result == "cancelled"  # type: ignore[attr-defined]
    assert [(s.outcome) for s in job.steps] == ["cancelled", "skipped", "success"]  # type: ignore[attr-defined]
    pid = int(marker.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        if " Z " in stat:
            break
        time.sleep(0.05)
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    assert stat == "" or " Z " in stat


def test_expressions_in_job(tmp_path: Path) -> None:
    ran = run(
        """
        env: {NAME: "${{ matrix.os }}-${{ github.ref_name }}"}
        steps:
          - id: one
            run: echo "v=${{ format('{0}.{1}', 1, 2) }}" >> $GITHUB_OUTPUT
          - if: steps.one.outputs.v == '1.2' && matrix.os == 'linux'
            run: echo "name=$NAME needs=${{ needs.setup.outputs.x }} ${{ strategy.job-total }}"
          - if: steps.one.outcome != 'success'
            run: echo no
          - run: echo "${{ hashFiles('nothing/**') }}|${{ runner.os }}|${{ job.status }}"
          - run: echo "${{ fromJSON('bad') }}"
            continue-on-error: true
        """,
        tmp_path,
        contexts={
            "matrix": {"os": "linux"},
            "strategy": {"job-total": 2},
            "needs": {"setup": {"result": "success", "outputs": {"x": "42"}}},
        },
    )
    assert ran.reporter.step_lines(1)[-1] == "name=linux-main needs=42 2"
    assert ran.outcomes[2] == ("skipped", "skipped")
    assert ran.reporter.step_lines(3)[-1] == "|Linux|success"
    assert ran.outcomes[4] == ("failure", "success")
    assert any("fromJSON" in line for line in ran.reporter.step_lines(4))


def test_composite_and_node_actions(tmp_path: Path) -> None:
    workspace = tmp_path / "job" / "workspace"
    action = workspace / ".github" / "actions" / "greet"
    action.mkdir(parents=True)
    (action / "action.yml").write_text(
        """
name: greet
inputs:
  who: {description: who, required: true}
  punctuation: {default: "!"}
outputs:
  message:
    value: ${{ steps.say.outputs.message }}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      run: |
        echo "message=Hello ${{ inputs.who }}${{ inputs.punctuation }}" >> "$GITHUB_OUTPUT"
        echo "action path $GITHUB_ACTION_PATH"
    - shell: sh
      run: echo "second step sees ${{ steps.say.outputs.message }}"
"""
    )
    node_action = workspace / "node-action"
    node_action.mkdir()
    (node_action / "action.yaml").write_text(
        "runs: {using: node20, main: index.js}\ninputs: {name: {default: x}}\n"
    )
    (node_action / "index.js").write_text(
        "const fs = require('fs');\n"
        "fs.appendFileSync(process.env.GITHUB_OUTPUT, `got=${process.env.INPUT_NAME}\\n`);\n"
        "console.log('node ran');\n"
    )
    ran = run(
        """
        steps:
          - id: g
            uses: ./.github/actions/greet
            with: {who: World}
          - run: echo "${{ steps.g.outputs.message }}"
          - id: n
            uses: ./node-action
            with: {name: Ada}
          - run: echo "node said ${{ steps.n.outputs.got }}"
          - uses: ./missing
            continue-on-error: true
          - uses: some/action@v1
            continue-on-error: true
          - uses: not a valid reference
            continue-on-error: true
        """,
        tmp_path,
    )
    assert ran.outcomes[:4] == [("success", "success")] * 4, ran.text
    assert "second step sees Hello World!" in ran.reporter.step_lines(0)
    assert ran.reporter.step_lines(1)[-1] == "Hello World!"
    assert ran.reporter.step_lines(3)[-1] == "node said Ada"
    assert ran.outcomes[4:] == [("failure", "success")] * 3
    assert any("no action.yml" in line for line in ran.reporter.step_lines(4))
    assert any("no server to fetch it from" in line for line in ran.reporter.step_lines(5))
    assert any("cannot resolve action" in line for line in ran.reporter.step_lines(6))


def test_bad_job_expression_fails_cleanly(tmp_path: Path) -> None:
    ran = run("env: {A: '${{ nope( }}'}\nsteps: [{run: 'true'}]", tmp_path)
    assert ran.result.result == "failure"
    assert ran.result.steps == []


def test_job_timeout_fails_the_job(tmp_path: Path) -> None:
    cancel = threading.Event()
    ran = run(
        """
        timeout-minutes: 0.02
        steps:
          - run: sleep 30
          - run: echo never
        """,
        tmp_path,
        cancel=cancel,
    )
    assert ran.result.result == "failure"
    assert ran.outcomes == [("failure", "failure"), ("skipped", "skipped")]
    assert "##[error]The job has exceeded the maximum execution time" in ran.text
    assert not cancel.is_set()


def test_token_is_a_secret(tmp_path: Path) -> None:
    ran = run(
        'steps: [{run: "echo ${{ secrets.GITHUB_TOKEN }} ${{ github.token }} $GITHUB_RUN_ID"}]',
        tmp_path,
        token="tok-abcdef-123",
    )
    assert ran.reporter.step_lines(0)[-1] == "*** *** 42"
