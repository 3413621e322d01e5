"""Run one job: its steps, in order, through an executor, reporting as it goes.

``run_job`` is shared by the runner agent and local runs. It knows nothing of the server: what it
needs comes in a :class:`JobSpec`, what it produces goes to a :class:`JobReporter` and the
returned :class:`JobResult`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opencodehub.actions.expressions import (
    ExpressionError,
    evaluate_if,
    evaluate_value,
    hash_files,
    interpolate,
    to_string,
)
from opencodehub.runner.commands import FileCommandError, parse_command, parse_key_value_file
from opencodehub.runner.executors.base import (
    EXIT_CANCELLED,
    EXIT_TIMEOUT,
    Executor,
    ExecutorError,
    JobEnvironment,
)
from opencodehub.runner.jobspec import JobResult, JobSpec, StepResult
from opencodehub.runner.masking import Masker
from opencodehub.runner.steps import ShellError, command_line, resolve_shell
from opencodehub.runner.uses import ActionStage, prepare_pre, run_uses
from opencodehub.runner.uses import run_stage as run_action_stage

__all__ = ["JobReporter", "run_job"]


class JobReporter(Protocol):
    def step_started(self, index: int, name: str) -> None: ...

    def log(self, index: int | None, line: str) -> None: ...

    def step_finished(self, index: int, name: str, outcome: str, conclusion: str) -> None: ...

    def annotation(self, level: str, message: str, file: str | None, line: int | None) -> None: ...


@dataclass
class _Scope:
    """State of one list of steps: the job's, or a composite action's."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = "success"  # success | failure
    inputs: dict[str, Any] | None = None
    action_path: str | None = None
    prefix: str = ""


class StepFailure(Exception):
    pass


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


class _JobRun:
    def __init__(
        self,
        spec: JobSpec,
        executor: Executor,
        reporter: JobReporter,
        cancel: threading.Event,
        workdir: Path,
        workspace: Path | None,
        action_cache: Path | None,
    ) -> None:
        self.spec = spec
        self.executor = executor
        self.reporter = reporter
        # The caller's event cancels the job; a job timeout sets only this one.
        self.external_cancel = cancel
        self.cancel = threading.Event()
        self.workdir = workdir
        self.workspace = workspace or workdir / "workspace"
        self.temp = workdir / "temp"
        self.tool_cache = workdir / "tool_cache"
        self.action_cache = action_cache or workdir / "_actions"
        self.job = spec.job
        self.masker = Masker(
            [*spec.contexts.secrets.values(), *([spec.token] if spec.token else [])]
        )
        self.secrets = dict(spec.contexts.secrets)
        if spec.token:
            self.secrets.setdefault("GITHUB_TOKEN", spec.token)
        self.global_env: dict[str, str] = {}  # from GITHUB_ENV
        self.path_prepend: list[str] = []  # from GITHUB_PATH
        self.job_env: dict[str, str] = {}
        self.summary: list[str] = []
        self.current_index: int | None = None
        self.stop_token: str | None = None
        self.deadline: float | None = None
        self.timed_out = False
        self.step_results: list[StepResult] = []
        # Actions' `post` stages, in the order their main steps ran; run last first.
        self.post_steps: list[ActionStage] = []
        # The state (STATE_*) of a top-level step whose action's `pre` ran, by step position.
        self.pre_state: dict[int, dict[str, str]] = {}
        # Where `save-state` and GITHUB_STATE go while an action's stage runs.
        self.state_sink: dict[str, str] | None = None

    # ---- logging ----

    def log(self, line: str, index: int | None) -> None:
        self.reporter.log(index, self.masker.mask(line))

    # ---- contexts ----

    def github_context(self) -> dict[str, Any]:
        spec = self.spec
        ctx = dict(spec.contexts.github)
        owner = spec.repository.split("/", 1)[0] if spec.repository else ""
        ref = spec.ref
        ref_name = ref.split("/", 2)[2] if ref.count("/") >= 2 else ref
        defaults = {
            "action": "",
            "action_path": "",
            "actor": spec.actor or owner,
            "api_url": spec.api_url,
            "event": spec.event_payload,
            "event_name": spec.event_name,
            "event_path": self.executor.path(self.event_path),
            "job": spec.job_key,
            "ref": ref,
            "ref_name": ref_name,
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
            "repository": spec.repository,
            "repository_owner": owner,
            "run_attempt": str(spec.run_attempt),
            "run_id": str(spec.run_id),
            "run_number": str(spec.run_number),
            "server_url": spec.server_url,
            "sha": spec.sha,
            "token": spec.token,
            "workflow": spec.workflow_name,
            "workspace": self.executor.path(self.workspace),
            "retention_days": "90",
        }
        for k, v in defaults.items():
            ctx.setdefault(k, v)
        ctx["workspace"] = defaults["workspace"]
        ctx["event_path"] = defaults["event_path"]
        ctx["job"] = spec.job_key
        return ctx

    def runner_context(self) -> dict[str, Any]:
        return {
            "os": self.executor.os_name,
            "arch": self.executor.arch,
            "name": self.spec.runner_name or "opencodehub",
            "temp": self.executor.path(self.temp),
            "tool_cache": self.executor.path(self.tool_cache),
            "workspace": self.executor.path(self.workspace.parent),
            "debug": "",
            "environment": "self-hosted",
        }

    def base_contexts(self) -> dict[str, Any]:
        c = self.spec.contexts
        return {
            "github": self.github,
            "vars": c.vars,
            "secrets": self.secrets,
            "matrix": c.matrix,
            "strategy": c.strategy,
            "needs": c.needs,
            "inputs": c.inputs,
            "runner": self.runner_ctx,
            "job": self.job_ctx,
        }

    def contexts(self, scope: _Scope, env: Mapping[str, str]) -> dict[str, Any]:
        ctx = self.base_contexts()
        ctx["env"] = dict(env)
        ctx["steps"] = scope.steps
        if scope.inputs is not None:
            ctx["inputs"] = scope.inputs
        if scope.action_path is not None:
            ctx["github"] = {**self.github, "action_path": scope.action_path}
        return ctx

    def functions(self, scope: _Scope) -> dict[str, Callable[..., Any]]:
        def success() -> bool:
            return scope.status == "success" and not self.cancel.is_set()

        def failure() -> bool:
            return scope.status == "failure" and not self.cancel.is_set()

        def cancelled() -> bool:
            return self.cancel.is_set()

        def always() -> bool:
            return True

        def hashfiles(*patterns: Any) -> str:
            return hash_files(self.workspace, [to_string(p) for p in patterns])

        return {
            "success": success,
            "failure": failure,
            "cancelled": cancelled,
            "always": always,
            "hashFiles": hashfiles,
        }

    def default_env(self) -> dict[str, str]:
        g = self.github
        return {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": g["workspace"],
            "GITHUB_SHA": self.spec.sha,
            "GITHUB_REF": self.spec.ref,
            "GITHUB_REF_NAME": g["ref_name"],
            "GITHUB_REF_TYPE": g["ref_type"],
            "GITHUB_REPOSITORY": self.spec.repository,
            "GITHUB_REPOSITORY_OWNER": g["repository_owner"],
            "GITHUB_RUN_ID": str(self.spec.run_id),
            "GITHUB_RUN_NUMBER": str(self.spec.run_number),
            "GITHUB_RUN_ATTEMPT": str(self.spec.run_attempt),
            "GITHUB_JOB": self.spec.job_key,
            "GITHUB_EVENT_NAME": self.spec.event_name,
            "GITHUB_EVENT_PATH": g["event_path"],
            "GITHUB_SERVER_URL": self.spec.server_url,
            "GITHUB_API_URL": self.spec.api_url,
            "GITHUB_GRAPHQL_URL": f"{self.spec.api_url.rstrip('/')}/graphql"
            if self.spec.api_url
            else "",
            "GITHUB_ACTOR": to_string(g.get("actor")),
            "GITHUB_WORKFLOW": self.spec.workflow_name,
            "GITHUB_HEAD_REF": to_string(g.get("head_ref")),
            "GITHUB_BASE_REF": to_string(g.get("base_ref")),
            "GITHUB_RETENTION_DAYS": "90",
            "RUNNER_OS": self.executor.os_name,
            "RUNNER_ARCH": self.executor.arch,
            "RUNNER_TEMP": self.runner_ctx["temp"],
            "RUNNER_TOOL_CACHE": self.runner_ctx["tool_cache"],
            "RUNNER_NAME": self.runner_ctx["name"],
            "RUNNER_WORKSPACE": self.runner_ctx["workspace"],
            "RUNNER_ENVIRONMENT": "self-hosted",
        }

    def base_process_env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.workdir)),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        if self.executor.name == "bwrap":
            home = self.workdir / "home"
            home.mkdir(exist_ok=True)
            env["HOME"] = str(home)
        if self.executor.name == "docker":
            env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
            env["HOME"] = "/root"
        return env

    def evaluate_env(self, raw: Any, contexts: dict[str, Any], scope: _Scope) -> dict[str, str]:
        """Evaluate an `env:` mapping in order; later keys see earlier ones in `env`."""
        if not raw:
            return {}
        if isinstance(raw, str):
            value = evaluate_value(raw, contexts, self.functions(scope))
            raw = value if isinstance(value, dict) else {}
        out: dict[str, str] = {}
        env_ctx = dict(contexts.get("env") or {})
        for key, value in raw.items():
            ctx = {**contexts, "env": env_ctx}
            result = (
                evaluate_value(value, ctx, self.functions(scope))
                if isinstance(value, str)
                else value
            )
            text = _env_string(result)
            out[str(key)] = text
            env_ctx[str(key)] = text
        return out

    # ---- the job ----

    def run(self) -> JobResult:
        for d in (self.workspace, self.temp, self.tool_cache, self.action_cache):
            d.mkdir(parents=True, exist_ok=True)
        self.event_path = self.temp / "_github_workflow" / "event.json"
        self.event_path.parent.mkdir(parents=True, exist_ok=True)
        self.event_path.write_text(json.dumps(self.spec.event_payload), encoding="utf-8")
        finished = threading.Event()

        def mirror() -> None:
            while not finished.is_set():
                if self.external_cancel.wait(0.1):
                    self.cancel.set()
                    return

        threading.Thread(target=mirror, daemon=True).start()
        try:
            return self._run()
        finally:
            finished.set()

    def _run(self) -> JobResult:
        self.job_ctx: dict[str, Any] = {"status": "success", "services": {}}
        self.github = self.github_context()
        self.runner_ctx = self.runner_context()
        scope = _Scope()
        result = "success"
        timeout = _minutes(self.job.get("timeout-minutes"), 360)
        started = False
        try:
            pre_ctx = {**self.base_contexts(), "env": {}}
            try:
                container = self.job.get("container")
                if isinstance(container, str):
                    container = {"image": container}
                container = evaluate_value(container, pre_ctx) if container else None
                services = evaluate_value(self.job.get("services") or {}, pre_ctx)
                self.mask_credentials(container, services)
                wf_env = self.evaluate_env(self.spec.workflow_env, pre_ctx, scope)
                self.job_env = {
                    **wf_env,
                    **self.evaluate_env(self.job.get("env"), {**pre_ctx, "env": wf_env}, scope),
                }
                if isinstance(timeout, str):
                    timeout = _minutes(evaluate_value(timeout, pre_ctx), 360)
            except ExpressionError as exc:
                self.log(f"##[error]{exc}", None)
                return JobResult(result="failure")
            self.deadline = time.monotonic() + float(timeout)
            self.log("Set up job", None)
            try:
                self.executor.start(
                    JobEnvironment(
                        workdir=self.workdir,
                        workspace=self.workspace,
                        job_key=self.spec.job_key,
                        job_id=self.spec.job_id,
                        container=container if isinstance(container, dict) else None,
                        services=services if isinstance(services, dict) else {},
                        log=lambda line: self.log(line, None),
                    )
                )
                started = True
            except ExecutorError as exc:
                self.log(f"##[error]{exc}", None)
                return JobResult(result="failure")
            self.job_ctx = {
                "status": "success",
                "container": getattr(self.executor, "container_context", {}) or {},
                "services": getattr(self.executor, "services_context", {}) or {},
            }
            steps = self.job.get("steps") or []
            self.run_pre_steps(steps, scope)
            self.run_steps(steps, scope, self.job.get("defaults") or {}, top_level=True)
            while self.post_steps:
                self.run_stage(self.post_steps.pop(), scope)
            if self.cancel.is_set():
                result = "failure" if self.timed_out else "cancelled"
            else:
                result = scope.status
            outputs = self.job_outputs(scope)
            return JobResult(
                result=result,  # type: ignore[arg-type]
                outputs=outputs,
                steps=self.step_results,
                summary="\n".join(self.summary),
            )
        finally:
            if started or self.executor.name != "host":
                try:
                    self.executor.stop()
                except Exception as exc:
                    self.log(f"##[warning]clean-up failed: {exc}", None)
            self.log("Cleaning up", None)

    def mask_credentials(self, container: Any, services: Any) -> None:
        """The registry passwords of `container` and `services` never reach the log."""
        entries = [container, *(services.values() if isinstance(services, dict) else [])]
        for entry in entries:
            credentials = entry.get("credentials") if isinstance(entry, dict) else None
            if isinstance(credentials, dict) and credentials.get("password"):
                self.masker.add(str(credentials["password"]))

    def job_outputs(self, scope: _Scope) -> dict[str, str]:
        outputs: dict[str, str] = {}
        raw = self.job.get("outputs") or {}
        ctx = self.contexts(scope, self.job_env)
        for name, expr in raw.items():
            try:
                value = to_string(interpolate(str(expr), ctx, self.functions(scope)))
            except ExpressionError as exc:
                self.log(f"##[warning]output '{name}': {exc}", None)
                continue
            if self.masker.contains_secret(value):
                self.log(f"##[warning]Skip output '{name}' since it may contain secret.", None)
                continue
            outputs[name] = value
        return outputs

    def run_pre_steps(self, steps: list[dict[str, Any]], scope: _Scope) -> None:
        """Every action's `pre`, in step order, before the first step."""
        for i, raw in enumerate(steps):
            if not isinstance(raw, dict) or not raw.get("uses"):
                continue
            ctx = self.contexts(scope, {**self.job_env, **self.global_env})
            name = self.step_name(raw, ctx, self.functions(scope))
            try:
                step_env = {**ctx["env"], **self.evaluate_env(raw.get("env"), ctx, scope)}
            except ExpressionError:
                continue  # the step reports it
            stage = prepare_pre(self, raw, name, {**ctx, "env": step_env}, scope)
            if stage is not None:
                self.pre_state[i] = stage.state
                self.run_stage(stage, scope)

    def run_stage(self, stage: ActionStage, scope: _Scope) -> None:
        """An action's `pre` or `post` as a step of the job's list (`pre-if`, `post-if`:
        `always()` unless given)."""
        index = len(self.step_results)
        self.current_index = index
        ctx = self.contexts(scope, stage.env)
        funcs = self.functions(scope)
        self.reporter.step_started(index, stage.name)
        condition = stage.runs.get(f"{stage.kind}-if")
        if condition is None or (isinstance(condition, str) and not condition.strip()):
            condition = "always()"
        try:
            run_it = evaluate_if(condition, ctx, funcs, funcs)
        except ExpressionError as exc:
            self.log(f"##[error]{exc}", index)
            self.finish(index, stage.name, "", stage.raw, scope, "failure", {}, True, ctx, False)
            return
        if not run_it:
            self.finish(index, stage.name, "", stage.raw, scope, "skipped", {}, True, ctx, False)
            return
        try:
            outcome, _ = run_action_stage(self, stage, ctx, scope, None, index)
        except (ExpressionError, ShellError, StepFailure, FileCommandError) as exc:
            self.log(f"##[error]{exc}", index)
            outcome = "failure"
        if self.cancel.is_set() and outcome == "failure" and not self.timed_out:
            outcome = "cancelled"
        self.finish(index, stage.name, "", stage.raw, scope, outcome, {}, True, ctx, False)

    def run_steps(
        self,
        steps: list[dict[str, Any]],
        scope: _Scope,
        defaults: dict[str, Any],
        top_level: bool,
        base_env: dict[str, str] | None = None,
    ) -> None:
        for i, raw in enumerate(steps):
            self.run_step(i, raw, scope, defaults, top_level, base_env or {})

    def run_step(
        self,
        i: int,
        raw: dict[str, Any],
        scope: _Scope,
        defaults: dict[str, Any],
        top_level: bool,
        outer_env: dict[str, str],
    ) -> None:
        step_id = str(raw.get("id") or f"__{scope.prefix}{i}")
        env_before = {**self.job_env, **self.global_env, **outer_env}
        ctx = self.contexts(scope, env_before)
        funcs = self.functions(scope)
        name = self.step_name(raw, ctx, funcs)
        index = len(self.step_results) if top_level else self.current_index
        if top_level:
            self.current_index = index
        # A job past its deadline is cancelled.
        if self.deadline is not None and time.monotonic() > self.deadline and not self.timed_out:
            self.timed_out = True
            self.log("##[error]The job has exceeded the maximum execution time", index)
            scope.status = "failure"
            self.cancel.set()
        try:
            run_it = evaluate_if(raw.get("if"), ctx, funcs, funcs)
            if_error = None
        except ExpressionError as exc:
            run_it, if_error = False, exc
        if if_error is not None:
            if top_level:
                self.reporter.step_started(index, name)
            self.log(f"##[error]{if_error}", index)
            self.finish(index, name, step_id, raw, scope, "failure", {}, top_level)
            return
        if not run_it:
            if top_level:
                self.reporter.step_started(index, name)
                self.finish(index, name, step_id, raw, scope, "skipped", {}, top_level)
            else:
                scope.steps[step_id] = {
                    "outputs": {},
                    "outcome": "skipped",
                    "conclusion": "skipped",
                }
            return
        if top_level:
            self.reporter.step_started(index, name)
        outputs: dict[str, str] = {}
        try:
            step_env = {**env_before, **self.evaluate_env(raw.get("env"), ctx, scope)}
            ctx = self.contexts(scope, step_env)
            timeout = raw.get("timeout-minutes")
            if isinstance(timeout, str):
                timeout = evaluate_value(timeout, ctx, funcs)
            step_timeout = _minutes(timeout, None)
            if "run" in raw:
                outcome, outputs = self.run_script(
                    raw, ctx, scope, defaults, step_env, step_timeout, index
                )
            else:
                state = self.pre_state.get(i, {}) if top_level else {}
                outcome, outputs = run_uses(
                    self, raw, ctx, scope, step_env, step_timeout, index, name=name, state=state
                )
        except (ExpressionError, ShellError, StepFailure, FileCommandError) as exc:
            self.log(f"##[error]{exc}", index)
            outcome = "failure"
        if self.cancel.is_set() and outcome == "failure" and not self.timed_out:
            outcome = "cancelled"
        self.finish(index, name, step_id, raw, scope, outcome, outputs, top_level, ctx)

    def finish(
        self,
        index: int | None,
        name: str,
        step_id: str,
        raw: dict[str, Any],
        scope: _Scope,
        outcome: str,
        outputs: dict[str, str],
        top_level: bool,
        ctx: dict[str, Any] | None = None,
        in_steps_context: bool = True,
    ) -> None:
        conclusion = outcome
        if outcome == "failure":
            coe = raw.get("continue-on-error", False)
            if isinstance(coe, str):
                try:
                    coe = evaluate_value(coe, ctx or self.contexts(scope, self.job_env))
                except ExpressionError:
                    coe = False
            if _as_bool(coe):
                conclusion = "success"
            else:
                scope.status = "failure"
                if top_level:
                    self.job_ctx["status"] = "failure"
        if in_steps_context:
            scope.steps[step_id] = {
                "outputs": outputs,
                "outcome": outcome,
                "conclusion": conclusion,
            }
        if top_level:
            assert index is not None
            self.step_results.append(
                StepResult(
                    index=index,
                    name=name,
                    outcome=outcome,  # type: ignore[arg-type]
                    conclusion=conclusion,  # type: ignore[arg-type]
                    outputs=outputs,
                )
            )
            self.reporter.step_finished(index, name, outcome, conclusion)

    def step_name(self, raw: dict[str, Any], ctx: dict[str, Any], funcs: dict[str, Any]) -> str:
        if raw.get("name"):
            try:
                return interpolate(str(raw["name"]), ctx, funcs)
            except ExpressionError:
                return str(raw["name"])
        if raw.get("uses"):
            return f"Run {raw['uses']}"
        lines = str(raw.get("run") or "").strip().splitlines()
        return f"Run {lines[0]}" if lines else "Run"

    # ---- processes ----

    def process_env(self, step_env: dict[str, str], files: dict[str, Path]) -> dict[str, str]:
        env = self.base_process_env()
        env.update(step_env)
        env.update(self.default_env())
        for key, path in files.items():
            env[key] = self.executor.path(path)
        if self.path_prepend:
            env["PATH"] = os.pathsep.join([*reversed(self.path_prepend), env.get("PATH", "")])
        return env

    def new_files(self) -> dict[str, Path]:
        token = uuid.uuid4().hex
        files = {
            "GITHUB_OUTPUT": self.temp / "_runner_file_commands" / f"set_output_{token}",
            "GITHUB_ENV": self.temp / "_runner_file_commands" / f"set_env_{token}",
            "GITHUB_PATH": self.temp / "_runner_file_commands" / f"add_path_{token}",
            "GITHUB_STEP_SUMMARY": self.temp / "_runner_file_commands" / f"step_summary_{token}",
            "GITHUB_STATE": self.temp / "_runner_file_commands" / f"save_state_{token}",
        }
        for path in files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        return files

    def execute(
        self,
        argv: list[str],
        step_env: dict[str, str],
        cwd: str,
        timeout: float | None,
        index: int | None,
        outputs: dict[str, str],
    ) -> tuple[str, dict[str, str]]:
        """Run one process for a step, with the file commands; returns (outcome, outputs)."""
        files = self.new_files()
        env = self.process_env(step_env, files)
        remaining = None
        if self.deadline is not None:
            remaining = max(0.0, self.deadline - time.monotonic())
        limit = (
            min(x for x in (timeout, remaining) if x is not None)
            if (timeout is not None or remaining is not None)
            else None
        )
        self.stop_token = None
        code = self.executor.run(
            argv,
            env=env,
            cwd=cwd,
            on_output=lambda line: self.on_output(line, index, outputs),
            cancel=self.step_cancel(),
            timeout=limit,
        )
        self.read_files(files, outputs, index)
        if code == EXIT_CANCELLED:
            self.log("##[error]The operation was canceled.", index)
            return "cancelled", outputs
        if code == EXIT_TIMEOUT:
            if remaining is not None and (timeout is None or remaining <= timeout):
                self.timed_out = True
                self.cancel.set()
                self.log("##[error]The job has exceeded the maximum execution time", index)
            else:
                self.log("##[error]The action has timed out.", index)
            return "failure", outputs
        if code != 0:
            self.log(f"##[error]Process completed with exit code {code}.", index)
            return "failure", outputs
        return "success", outputs

    def step_cancel(self) -> threading.Event:
        """What cancels a process starting now: the job's cancellation, unless the job was
        cancelled already — a step that runs then (`always()`, a `post`) runs to its end, as
        on GitHub (its timeouts still apply)."""
        return threading.Event() if self.cancel.is_set() else self.cancel

    def run_script(
        self,
        raw: dict[str, Any],
        ctx: dict[str, Any],
        scope: _Scope,
        defaults: dict[str, Any],
        step_env: dict[str, str],
        timeout: float | None,
        index: int | None,
    ) -> tuple[str, dict[str, str]]:
        funcs = self.functions(scope)
        script = interpolate(str(raw.get("run") or ""), ctx, funcs)
        run_defaults = (defaults or {}).get("run") or {}
        wf_defaults = (self.spec.workflow_defaults or {}).get("run") or {}
        shell = raw.get("shell") or run_defaults.get("shell") or wf_defaults.get("shell")
        if shell:
            shell = interpolate(str(shell), ctx, funcs)
        workdir = (
            raw.get("working-directory")
            or run_defaults.get("working-directory")
            or wf_defaults.get("working-directory")
        )
        which_env = self.process_env(step_env, {})
        command = resolve_shell(shell, lambda p: self.executor.which(p, which_env))
        script_path = self.temp / f"{uuid.uuid4()}{command.extension}"
        script_path.write_text(command.script_prefix + script + command.script_suffix, "utf-8")
        script_path.chmod(0o755)
        cwd = self.executor.path(self.workspace)
        if workdir:
            wd = interpolate(str(workdir), ctx, funcs)
            cwd = wd if wd.startswith("/") else f"{cwd.rstrip('/')}/{wd}"
        argv = command_line(command, self.executor.path(script_path))
        self.log(f"##[group]Run {script.strip().splitlines()[0] if script.strip() else ''}", index)
        for line in script.rstrip("\n").splitlines():
            self.log(line, index)
        self.log(f"shell: {' '.join(command.argv)}", index)
        self.log("##[endgroup]", index)
        return self.execute(argv, step_env, cwd, timeout, index, {})

    def on_output(self, line: str, index: int | None, outputs: dict[str, str]) -> None:
        if self.stop_token is not None:
            if line.strip() == f"::{self.stop_token}::":
                self.stop_token = None
                return
            self.log(line, index)
            return
        cmd = parse_command(line) if "::" in line else None
        if cmd is None:
            self.log(line, index)
            return
        name = cmd.name.lower()
        if name == "add-mask":
            self.masker.add(cmd.message)
            self.log("::add-mask::***", index)
        elif name == "group":
            self.log(f"##[group]{cmd.message}", index)
        elif name == "endgroup":
            self.log("##[endgroup]", index)
        elif name in ("error", "warning", "notice"):
            message = self.masker.mask(cmd.message)
            line_no = cmd.properties.get("line")
            self.reporter.annotation(
                name,
                message,
                cmd.properties.get("file"),
                int(line_no) if line_no and line_no.isdigit() else None,
            )
            self.log(f"##[{name}]{cmd.message}", index)
        elif name == "debug":
            self.log(f"##[debug]{cmd.message}", index)
        elif name == "stop-commands":
            self.stop_token = cmd.message
        elif name == "set-output":
            key = cmd.properties.get("name")
            if key:
                outputs[key] = cmd.message
        elif name in ("set-env", "add-path"):
            self.log(
                f"##[error]The `{name}` command is disabled. Use environment files instead.",
                index,
            )
        elif name == "save-state":
            key = cmd.properties.get("name")
            if key and self.state_sink is not None:
                self.state_sink[key] = cmd.message
        elif name == "echo":
            pass
        else:
            self.log(line, index)

    def read_files(
        self, files: dict[str, Path], outputs: dict[str, str], index: int | None
    ) -> None:
        for key, value in parse_key_value_file(files["GITHUB_OUTPUT"]):
            outputs[key] = value
        if self.state_sink is not None:
            for key, value in parse_key_value_file(files["GITHUB_STATE"]):
                self.state_sink[key] = value
        for key, value in parse_key_value_file(files["GITHUB_ENV"]):
            if key.upper() == "NODE_OPTIONS" or (
                key.startswith(("GITHUB_", "RUNNER_")) and key in (self.default_env())
            ):
                self.log(f"##[warning]Can't overwrite the value of '{key}'", index)
                continue
            self.global_env[key] = value
        path_file = files["GITHUB_PATH"]
        if path_file.exists():
            for line in path_file.read_text("utf-8", "replace").splitlines():
                if line.strip():
                    self.path_prepend.append(line.strip())
        summary = files["GITHUB_STEP_SUMMARY"]
        if summary.exists():
            text = summary.read_text("utf-8", "replace")
            if text:
                self.summary.append(self.masker.mask(text))


def _env_string(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return to_string(value)


def _minutes(value: Any, default: float | None) -> Any:
    if value is None or value == "":
        return default * 60 if default is not None else None
    if isinstance(value, str) and "${{" in value:
        return value
    try:
        return float(value) * 60
    except (TypeError, ValueError):
        return default * 60 if default is not None else None


def run_job(
    spec: JobSpec,
    executor: Executor,
    reporter: JobReporter,
    cancel: threading.Event,
    workdir: Path,
    *,
    workspace: Path | None = None,
    action_cache: Path | None = None,
) -> JobResult:
    """Run the job to completion (or cancellation) and return its result.

    ``workdir`` is the job's own directory (created if missing); ``workspace`` overrides the
    checkout directory (local runs use the checkout itself); ``action_cache`` is where
    ``owner/repo@ref`` actions are cloned to (shared between jobs).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return _JobRun(spec, executor, reporter, cancel, workdir, workspace, action_cache).run()
