"""`opencodehub actions run`: a workflow from a local checkout, jobs in `needs` order."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from opencodehub.cli import app

WORKFLOW = """
name: Local
on: [push, workflow_dispatch]
jobs:
  setup:
    runs-on: ubuntu-latest
    outputs:
      list: ${{ steps.s.outputs.list }}
    steps:
      - id: s
        run: echo 'list=["a","b"]' >> "$GITHUB_OUTPUT"
  build:
    needs: setup
    runs-on: ubuntu-latest
    strategy:
      matrix:
        item: ${{ fromJSON(needs.setup.outputs.list) }}
    steps:
      - run: echo "building ${{ matrix.item }} secret=${{ secrets.KEY }} var=${{ vars.V }}"
      - run: test -f README && echo "workspace is the checkout"
  skipped:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - run: echo never
  report:
    needs: [build, skipped]
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo "build=${{ needs.build.result }} skipped=${{ needs.skipped.result }}"
"""


def checkout(tmp_path: Path, text: str = WORKFLOW, name: str = "local.yml") -> Path:
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
    (root / ".github" / "workflows" / name).write_text(textwrap.dedent(text))
    (root / "README").write_text("hello\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    return root


def invoke(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["actions", "run", "-C", str(root), *args])
    return result.exit_code, result.stdout, result.stderr if result.stderr_bytes else ""


def test_run_all_jobs(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    out_json = tmp_path / "result.json"
    code, out, _ = invoke(
        root, "--secret", "KEY=hush-hush", "--var", "V=1", "--json", str(out_json)
    )
    assert code == 0, out
    assert "building a secret=*** var=1" in out
    assert "building b secret=*** var=1" in out
    assert "hush-hush" not in out
    assert "workspace is the checkout" in out
    assert "build=success skipped=skipped" in out
    records = json.loads(out_json.read_text())
    assert [(r["name"], r["result"]) for r in records] == [
        ("setup", "success"),
        ("skipped", "skipped"),
        ("build (a)", "success"),
        ("build (b)", "success"),
        ("report", "success"),
    ]
    assert records[0]["outputs"] == {"list": '["a","b"]'}


def test_single_job_runs_its_needs(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    code, out, _ = invoke(root, ".github/workflows/local.yml", "--job", "build")
    assert code == 0, out
    assert "building a" in out
    assert "Job report" not in out and "Job setup: success" in out


def test_failure_exit_code_and_bad_input(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        """
        on: push
        jobs:
          bad:
            runs-on: ubuntu-latest
            steps:
              - run: exit 7
        """,
    )
    code, out, _ = invoke(root)
    assert code == 1
    assert "Process completed with exit code 7" in out
    code, _, _ = invoke(root, "nope.yml")
    assert code == 2
    code, _, _ = invoke(root, "--job", "ghost")
    assert code == 2
    code, _, _ = invoke(root, "--secret", "novalue")
    assert code == 2


def test_invalid_workflow_reports_positions(tmp_path: Path) -> None:
    root = checkout(
        tmp_path, "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: x, bad: 1}]\n"
    )
    result = CliRunner().invoke(app, ["actions", "run", "-C", str(root)])
    assert result.exit_code == 2
    assert "local.yml:5:" in result.output and "unknown key 'bad'" in result.output


def test_dispatch_inputs(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        """
        on:
          workflow_dispatch:
            inputs:
              level: {type: choice, options: [low, high], default: low}
              count: {type: number, default: 2}
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - run: echo "level=${{ inputs.level }} count=${{ inputs.count }}"
        """,
    )
    code, out, _ = invoke(root, "--event", "workflow_dispatch", "--input", "level=high")
    assert code == 0, out
    assert "level=high count=2" in out
    code, out, _ = invoke(root, "--event", "workflow_dispatch", "--input", "level=max")
    assert code == 2


def test_bwrap_executor(tmp_path: Path) -> None:
    # The sandbox user must be able to reach the checkout (pytest's directories are private).
    base = Path(__file__).resolve().parents[2] / ".cache" / "localrun-tests"
    base.mkdir(parents=True, exist_ok=True)
    shared = Path(tempfile.mkdtemp(dir=base))
    shared.chmod(0o755)
    root = checkout(
        shared,
        """
        on: push
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - run: cat README && hostname
        """,
    )
    try:
        code, out, _ = invoke(root, "--executor", "bwrap")
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert code == 0, out
    assert "hello" in out and "runner" in out


def test_job_continue_on_error_keeps_exit_code_zero(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        """
        on: push
        jobs:
          flaky:
            runs-on: ubuntu-latest
            continue-on-error: ${{ matrix.experimental }}
            strategy:
              matrix:
                experimental: [true]
            steps:
              - run: exit 1
        """,
    )
    code, out, _ = invoke(root)
    assert code == 0, out
    assert "Job flaky (true): failure" in out
