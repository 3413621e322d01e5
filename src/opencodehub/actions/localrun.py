"""Run a workflow from a local checkout with the same engine the runners use."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from opencodehub.actions.expressions import ExpressionError, evaluate_if, evaluate_value, truthy
from opencodehub.actions.matrix import MatrixError, expand_matrix, strategy_context
from opencodehub.actions.workflow import (
    Workflow,
    WorkflowError,
    job_display_name,
    parse_workflow,
)
from opencodehub.runner.engine import JobReporter, run_job
from opencodehub.runner.executors.base import ExecutorOptions, build_executor
from opencodehub.runner.jobspec import JobContexts, JobResult, JobSpec

__all__ = ["JobRecord", "LocalRunError", "find_workflows", "run_workflow"]


class LocalRunError(Exception):
    pass


@dataclass
class JobRecord:
    job_key: str
    name: str
    matrix: dict[str, Any]
    result: str
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    # A failure that does not fail the run (the job's `continue-on-error`).
    allowed_failure: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job_key,
            "name": self.name,
            "matrix": self.matrix,
            "result": self.result,
            "outputs": self.outputs,
            "steps": self.steps,
        }


class PrintReporter:
    def __init__(self, prefix: str, out: TextIO, lock: threading.Lock) -> None:
        self.prefix = prefix
        self.out = out
        self.lock = lock

    def _print(self, text: str) -> None:
        with self.lock:
            self.out.write(f"[{self.prefix}] {text}\n")
            self.out.flush()

    def step_started(self, index: int, name: str) -> None:
        self._print(f"⭐ {name}")

    def log(self, index: int | None, line: str) -> None:
        self._print(f"  | {line}")

    def step_finished(self, index: int, name: str, outcome: str, conclusion: str) -> None:
        mark = {"success": "✅", "failure": "❌", "skipped": "⏭", "cancelled": "🚫"}
        shown = outcome if outcome == conclusion else f"{outcome} (continue-on-error)"
        self._print(f"{mark.get(outcome, '?')} {shown} - {name}")

    def annotation(self, level: str, message: str, file: str | None, line: int | None) -> None:
        where = f" {file}:{line}" if file else ""
        self._print(f"{level}{where}: {message}")


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def find_workflows(root: Path, target: str | None) -> list[Path]:
    if target:
        path = Path(target)
        if not path.is_absolute():
            for candidate in (root / target, root / ".github" / "workflows" / target, path):
                if candidate.is_file():
                    path = candidate
                    break
        if not path.is_file():
            raise LocalRunError(f"no workflow file '{target}'")
        return [path]
    folder = root / ".github" / "workflows"
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
    if not files:
        raise LocalRunError(f"no workflows in {folder}")
    return files


def _github_context(root: Path, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    sha = _git(root, "rev-parse", "HEAD") or "0" * 40
    branch = _git(root, "symbolic-ref", "-q", "HEAD") or "refs/heads/main"
    remote = _git(root, "remote", "get-url", "origin")
    repository = ""
    if remote:
        tail = remote.rstrip("/").removesuffix(".git").replace(":", "/").split("/")
        if len(tail) >= 2:
            repository = f"{tail[-2]}/{tail[-1]}"
    if not repository:
        repository = f"local/{root.resolve().name}"
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = "local"
    return {
        "event_name": event,
        "sha": sha,
        "ref": branch,
        "repository": repository,
        "actor": actor,
        "event": payload,
    }


def run_workflow(
    path: Path,
    *,
    root: Path,
    event: str = "push",
    only_job: str | None = None,
    executor: str = "host",
    secrets: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
    inputs: dict[str, str] | None = None,
    payload: dict[str, Any] | None = None,
    out: TextIO | None = None,
    options: ExecutorOptions | None = None,
    cancel: threading.Event | None = None,
    reporter_factory: Callable[[JobSpec], JobReporter] | None = None,
) -> list[JobRecord]:
    """Run the workflow's jobs in `needs` order and return one record per job (and combination)."""
    out = out or sys.stdout
    cancel = cancel or threading.Event()
    rel = (
        str(path.resolve().relative_to(root.resolve()))
        if path.resolve().is_relative_to(root.resolve())
        else str(path)
    )
    workflow = parse_workflow(rel, path.read_text(encoding="utf-8"))
    calls = [
        workflow.issue(
            ("jobs", key, "uses"),
            "reusable workflows (job-level 'uses') run on the server only, not in a local run",
        )
        for key, job in workflow.jobs.items()
        if job.uses is not None
    ]
    if calls:
        raise WorkflowError(calls)
    payload = payload or {}
    gh = _github_context(root, event, payload)
    workflow_inputs = _dispatch_inputs(workflow, inputs or {})
    if event == "workflow_dispatch":
        payload.setdefault("inputs", workflow_inputs)
    selected = _selected_jobs(workflow, only_job)
    results: dict[str, dict[str, Any]] = {}
    records: list[JobRecord] = []
    lock = threading.Lock()
    run_id = int.from_bytes(os.urandom(3), "big")
    for key in workflow.job_order():
        if key not in selected:
            continue
        job = workflow.jobs[key]
        needs_ctx = {n: results.get(n, {"result": "skipped", "outputs": {}}) for n in job.needs}
        base = {
            "github": gh,
            "needs": needs_ctx,
            "vars": variables or {},
            "inputs": workflow_inputs,
            "env": {},
        }
        status = _needs_status(needs_ctx)
        funcs: dict[str, Callable[..., Any]] = {
            "success": lambda status=status: status == "success",
            "failure": lambda status=status: status == "failure",
            "cancelled": lambda: cancel.is_set(),
            "always": lambda: True,
        }
        try:
            run_it = evaluate_if(job.if_, base, funcs)
        except ExpressionError as exc:
            out.write(f"[{key}] ##[error]if: {exc}\n")
            results[key] = {"result": "failure", "outputs": {}}
            records.append(JobRecord(key, key, {}, "failure"))
            continue
        if not run_it:
            out.write(f"[{key}] job skipped\n")
            results[key] = {"result": "skipped", "outputs": {}}
            records.append(JobRecord(key, job.name or key, {}, "skipped"))
            continue
        try:
            combos = expand_matrix(job.strategy, base)
        except MatrixError as exc:
            out.write(f"[{key}] ##[error]{exc}\n")
            results[key] = {"result": "failure", "outputs": {}}
            records.append(JobRecord(key, key, {}, "failure"))
            continue
        job_results: list[JobResult] = []
        strategy = job.strategy if isinstance(job.strategy, dict) else {}
        fail_fast = strategy.get("fail-fast", True) is not False and len(combos) > 1
        for index, matrix in enumerate(combos):
            name = job_display_name(job, matrix, {**base, "matrix": matrix})
            if fail_fast and any(r.result == "failure" for r in job_results):
                records.append(JobRecord(key, name, matrix, "cancelled"))
                job_results.append(JobResult(result="cancelled"))
                continue
            spec = JobSpec(
                job_id=len(records) + 1,
                run_id=run_id,
                workflow_name=workflow.name,
                workflow_path=rel,
                job_key=key,
                job_name=name,
                job=job.raw,
                workflow_env=workflow.raw.get("env") or {},
                workflow_defaults=workflow.defaults,
                contexts=JobContexts(
                    github=gh,
                    vars=variables or {},
                    secrets={"GITHUB_TOKEN": "", **(secrets or {})},
                    matrix=matrix,
                    strategy=strategy_context(job.strategy, index, len(combos)),
                    needs=needs_ctx,
                    inputs=workflow_inputs,
                ),
                repository=gh["repository"],
                sha=gh["sha"],
                ref=gh["ref"],
                event_name=event,
                event_payload=payload,
                actor=gh["actor"],
                runner_name="local",
            )
            reporter = (
                reporter_factory(spec) if reporter_factory else PrintReporter(name, out, lock)
            )
            result = _run_one(spec, executor, root, reporter, options, cancel)
            job_results.append(result)
            allowed = False
            if result.result == "failure" and job.continue_on_error:
                try:
                    allowed = truthy(
                        evaluate_value(job.continue_on_error, {**base, "matrix": matrix})
                    )
                except ExpressionError:
                    allowed = False
            records.append(
                JobRecord(
                    key,
                    name,
                    matrix,
                    result.result,
                    result.outputs,
                    [s.model_dump() for s in result.steps],
                    allowed,
                )
            )
        merged: dict[str, str] = {}
        for r in job_results:
            merged.update(r.outputs)
        outcome = "success"
        if any(r.result == "failure" for r in job_results):
            outcome = "failure"
        elif any(r.result == "cancelled" for r in job_results):
            outcome = "cancelled"
        results[key] = {"result": outcome, "outputs": merged}
    return records


def _run_one(
    spec: JobSpec,
    executor: str,
    root: Path,
    reporter: JobReporter,
    options: ExecutorOptions | None,
    cancel: threading.Event,
) -> JobResult:
    workdir = Path(tempfile.mkdtemp(prefix="och-job-"))
    try:
        return run_job(
            spec,
            build_executor(executor, options),
            reporter,
            cancel,
            workdir,
            workspace=root.resolve(),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _needs_status(needs: dict[str, dict[str, Any]]) -> str:
    results = [n.get("result") for n in needs.values()]
    if any(r in ("failure", "cancelled") for r in results):
        return "failure"
    if any(r == "skipped" for r in results):
        return "skipped"
    return "success"


def _selected_jobs(workflow: Workflow, only: str | None) -> set[str]:
    if not only:
        return set(workflow.jobs)
    if only not in workflow.jobs:
        raise LocalRunError(f"no job '{only}' in {workflow.path}")
    # A job runs with the jobs it needs, transitively, as their outputs feed it.
    selected: set[str] = set()
    todo = [only]
    while todo:
        key = todo.pop()
        if key not in selected:
            selected.add(key)
            todo.extend(workflow.jobs[key].needs)
    return selected


def _dispatch_inputs(workflow: Workflow, given: dict[str, str]) -> dict[str, Any]:
    declared = workflow.dispatch_inputs or {}
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        try:
            values[name] = spec.coerce(given.get(name))
        except ValueError as exc:
            raise LocalRunError(str(exc)) from None
    for name, value in given.items():
        values.setdefault(name, value)
    return values


def dump_records(records: list[JobRecord]) -> str:
    return json.dumps([r.as_dict() for r in records], indent=2)
