"""Actions' `pre` and `post` on the host executor: GitHub's order, conditions and STATE_*."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import yaml

from opencodehub.runner.executors.base import ExecutorError
from opencodehub.runner.executors.docker import parse_ports, parse_volumes
from tests.runner.conftest import run

SERVER = "http://127.0.0.1:9"  # never contacted: the actions are in the cache already


def _cached_action(
    tmp_path: Path, name: str, action: dict[str, object], files: dict[str, str]
) -> None:
    """Put `owner/repo@v1` in the job's action cache as if it had been fetched."""
    directory = tmp_path / "job" / "_actions" / name / "v1"
    directory.mkdir(parents=True)
    (directory / "action.yml").write_text(yaml.safe_dump(action))
    for path, text in files.items():
        (directory / path).write_text(text)
    (directory / ".och-complete").write_text("v1")


def _node_action(tag: str, **runs: str) -> tuple[dict[str, object], dict[str, str]]:
    action: dict[str, object] = {
        "name": tag,
        "inputs": {"who": {"default": "nobody"}},
        "runs": {"using": "node20", "main": "main.js", **runs},
    }
    files = {
        "main.js": (
            f"console.log('main {tag} state=' + (process.env.STATE_token || '-'));\n"
            "console.log('::save-state name=from_main::' + process.env.INPUT_WHO);\n"
        ),
        "pre.js": (
            f"const fs = require('fs');\nconsole.log('pre {tag} who=' + process.env.INPUT_WHO);\n"
            f"fs.appendFileSync(process.env.GITHUB_STATE, 'token=from-pre-{tag}\\n');\n"
        ),
        "post.js": (
            f"console.log('post {tag} token=' + (process.env.STATE_token || '-') + "
            "' main=' + (process.env.STATE_from_main || '-'));\n"
            "if (process.env.INPUT_WHO === 'fail-post') process.exit(3);\n"
        ),
    }
    return action, files


def _names(ran: object) -> list[str]:
    return [step.name for step in ran.result.steps]  # type: ignore[attr-defined]


def test_pre_and_post_run_in_github_order_with_state(tmp_path: Path) -> None:
    action_a, files_a = _node_action("A", pre="pre.js", post="post.js")
    _cached_action(tmp_path, "acme/a", action_a, files_a)
    action_b, files_b = _node_action("B", pre="pre.js", post="post.js")
    _cached_action(tmp_path, "acme/b", action_b, files_b)
    ran = run(
        """
        steps:
          - uses: acme/a@v1
            with: {who: alice}
          - run: echo middle
          - name: Second
            uses: acme/b@v1
            with: {who: bob}
        """,
        tmp_path,
        server_url=SERVER,
    )
    assert ran.result.result == "success", ran.text
    assert _names(ran) == [
        "Pre Run acme/a@v1",
        "Pre Second",
        "Run acme/a@v1",
        "Run echo middle",
        "Second",
        "Post Second",
        "Post Run acme/a@v1",
    ]
    assert [s.index for s in ran.result.steps] == list(range(7))
    lines = ran.reporter
    assert "pre A who=alice" in lines.step_lines(0)
    assert "pre B who=bob" in lines.step_lines(1)
    assert "main A state=from-pre-A" in lines.step_lines(2)
    assert "main B state=from-pre-B" in lines.step_lines(4)
    assert "post B token=from-pre-B main=bob" in lines.step_lines(5)
    assert "post A token=from-pre-A main=alice" in lines.step_lines(6)
    # Reported as the steps ran: started and finished in order, each once.
    starts = [e[1] for e in ran.reporter.events if e[0] == "start"]
    assert starts == list(range(7))


def test_conditions_failures_and_skipped_main(tmp_path: Path) -> None:
    action, files = _node_action(
        "C",
        pre="pre.js",
        post="post.js",
        **{"pre-if": "runner.os == 'Windows'", "post-if": "failure()"},
    )
    _cached_action(tmp_path, "acme/c", action, files)
    plain, plain_files = _node_action("D", post="post.js")
    _cached_action(tmp_path, "acme/d", plain, plain_files)
    ran = run(
        """
        steps:
          - uses: acme/c@v1
          - if: false
            uses: acme/d@v1
          - uses: acme/d@v1
            with: {who: fail-post}
          - run: exit 1
        """,
        tmp_path,
        server_url=SERVER,
    )
    assert _names(ran) == [
        "Pre Run acme/c@v1",
        "Run acme/c@v1",
        "Run acme/d@v1",  # skipped by its `if`: no post
        "Run acme/d@v1",
        "Run exit 1",
        "Post Run acme/d@v1",
        "Post Run acme/c@v1",
    ]
    assert ran.outcomes == [
        ("skipped", "skipped"),  # pre-if false
        ("success", "success"),
        ("skipped", "skipped"),
        ("success", "success"),
        ("failure", "failure"),
        ("failure", "failure"),  # post-if defaults to always(); the script exits 3
        ("success", "success"),  # post-if: failure() holds now
    ]
    assert "main C state=-" in ran.reporter.step_lines(1)
    assert "post C token=- main=nobody" in ran.reporter.step_lines(6)
    assert ran.result.result == "failure"


def test_failing_pre_skips_main_steps_and_post_still_runs(tmp_path: Path) -> None:
    action, files = _node_action("E", pre="pre.js", post="post.js")
    files["pre.js"] = "process.exit(1);\n"
    _cached_action(tmp_path, "acme/e", action, files)
    ran = run(
        """
        steps:
          - uses: acme/e@v1
          - run: echo never
          - if: always()
            run: echo cleanup
        """,
        tmp_path,
        server_url=SERVER,
    )
    assert ran.result.result == "failure"
    assert ran.outcomes == [
        ("failure", "failure"),
        ("skipped", "skipped"),
        ("skipped", "skipped"),
        ("success", "success"),
    ]
    # The main step never ran, so its post was never registered.
    assert _names(ran) == [
        "Pre Run acme/e@v1",
        "Run acme/e@v1",
        "Run echo never",
        "Run echo cleanup",
    ]


def test_local_action_has_post_but_no_pre_and_composite_has_neither(tmp_path: Path) -> None:
    workspace = tmp_path / "job" / "workspace"
    local = workspace / "local"
    local.mkdir(parents=True)
    action, files = _node_action("L", pre="pre.js", post="post.js")
    (local / "action.yml").write_text(yaml.safe_dump(action))
    for path, text in files.items():
        (local / path).write_text(text)
    composite = workspace / "comp"
    composite.mkdir()
    (composite / "action.yml").write_text(
        yaml.safe_dump(
            {
                "runs": {
                    "using": "composite",
                    "pre": "pre.js",
                    "post": "post.js",
                    "steps": [{"run": "echo inside composite", "shell": "sh"}],
                }
            }
        )
    )
    ran = run(
        """
        steps:
          - uses: ./local
          - uses: ./comp
        """,
        tmp_path,
    )
    assert ran.result.result == "success", ran.text
    assert _names(ran) == ["Run ./local", "Run ./comp", "Post Run ./local"]
    assert "main L state=-" in ran.reporter.step_lines(0)
    assert "inside composite" in ran.reporter.step_lines(1)
    assert "post L token=- main=nobody" in ran.reporter.step_lines(2)


def test_post_runs_after_cancelled_job(tmp_path: Path) -> None:
    action, files = _node_action("F", post="post.js")
    _cached_action(tmp_path, "acme/f", action, files)
    cancel = threading.Event()
    started = tmp_path / "job" / "workspace" / "started"

    def cancel_once_started() -> None:
        while not started.exists() and not cancel.wait(0.05):
            pass
        cancel.set()

    threading.Thread(target=cancel_once_started, daemon=True).start()
    steps = """
    steps:
      - run: touch started; sleep 30
      - uses: acme/f@v1
        if: always()
    """
    ran = run(steps, tmp_path, server_url=SERVER, cancel=cancel)
    assert _names(ran) == ["Run touch started; sleep 30", "Run acme/f@v1", "Post Run acme/f@v1"]
    # Steps that run once the job is cancelled (always(), posts) run to their end.
    assert ran.outcomes == [
        ("cancelled", "cancelled"),
        ("success", "success"),
        ("success", "success"),
    ]
    assert "post F token=- main=nobody" in ran.reporter.step_lines(2)
    assert ran.result.result == "cancelled"


def test_docker_action_dockerfile_outside_the_action_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "job" / "workspace"
    (workspace / "act").mkdir(parents=True)
    (workspace / "Dockerfile").write_text("FROM scratch\n")
    refused = {
        "../Dockerfile": "points outside the action's directory",
        "/etc/hostname": "a Dockerfile path in the action",
        "missing/Dockerfile": "no such Dockerfile",
    }
    for image, message in refused.items():
        (workspace / "act" / "action.yml").write_text(
            yaml.safe_dump({"runs": {"using": "docker", "image": image}})
        )
        ran = run("steps: [{uses: ./act}]", tmp_path)
        assert ran.result.result == "failure"
        assert message in ran.text, ran.text
    (workspace / "act" / "Dockerfile").write_text("FROM scratch\n")
    (workspace / "act" / "action.yml").write_text(
        yaml.safe_dump({"runs": {"using": "docker", "image": "Dockerfile"}})
    )
    ran = run("steps: [{uses: ./act}]", tmp_path)
    assert ran.result.result == "failure"
    assert "need the docker executor; this job runs on 'host'" in ran.text


def test_ports_and_volumes_are_validated() -> None:
    assert parse_ports(["8080:80", 5432, "0.0.0.0:9000:90/udp"], "container") == {
        "80/tcp": ("127.0.0.1", 8080),
        "5432/tcp": ("127.0.0.1", None),
        "90/udp": ("0.0.0.0", 9000),  # noqa: S104
    }
    assert parse_ports(["8080", "9090:8080"], "container") == {
        "8080/tcp": [("127.0.0.1", None), ("127.0.0.1", 9090)]
    }
    for bad in (["80:99999"], ["a:b"], "8080", [True], ["1-5:1-5"]):
        with pytest.raises(ExecutorError, match="service 'db'"):
            parse_ports(bad, "service 'db'")
    assert parse_volumes(["data:/data", "/cache", "logs:/var/log:ro"], "container", False) == [
        ("data", "/data", "rw"),
        ("", "/cache", "rw"),
        ("logs", "/var/log", "ro"),
    ]
    assert parse_volumes(["/srv/x:/x:ro"], "container", True) == [("/srv/x", "/x", "ro")]
    refused = {
        "/srv/x:/x": "does not allow",
        "data:relative": "must be an absolute path",
        "data:/x/../etc": "must be an absolute path",
        "../up:/x": "a volume name or an absolute path",
        "data:/x:rx": "invalid volume mode",
        "a:b:c:d": "invalid volume",
    }
    for entry, message in refused.items():
        with pytest.raises(ExecutorError, match=re.escape(message)):
            parse_volumes([entry], "container", False)


def test_an_action_inside_a_composite_runs_its_post_but_not_its_pre(tmp_path: Path) -> None:
    # As on GitHub (actions/runner#1478): `pre` runs only for actions the job uses directly;
    # an action used by a composite action's step gets its main and its `post`.
    action, files = _node_action("N", pre="pre.js", post="post.js")
    _cached_action(tmp_path, "acme/n", action, files)
    composite = {
        "runs": {
            "using": "composite",
            "steps": [{"uses": "acme/n@v1", "with": {"who": "nested"}}],
        }
    }
    _cached_action(tmp_path, "acme/comp", composite, {})
    ran = run(
        """
        steps:
          - uses: acme/comp@v1
        """,
        tmp_path,
        server_url=SERVER,
    )
    assert ran.result.result == "success", ran.text
    assert _names(ran) == ["Run acme/comp@v1", "Post Run acme/n@v1"]
    assert not any(line.startswith("pre N") for line in ran.reporter.lines)
    assert "main N state=-" in ran.reporter.step_lines(0)
    assert "post N token=- main=nested" in ran.reporter.step_lines(1)
