"""`uses:` steps: local and remote actions (composite, node, docker) and the built-in checkout."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from opencodehub.actions.expressions import ExpressionError, evaluate_value, interpolate, to_string
from opencodehub.runner.executors.base import ExecutorError

if TYPE_CHECKING:
    from opencodehub.runner.engine import _JobRun, _Scope

_REMOTE = re.compile(
    r"^(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+)(?P<sub>(?:/[^@]+)?)@(?P<ref>[^\s@]+)$"
)
_fetch_lock = threading.Lock()


class ActionError(Exception):
    pass


def _load_action(directory: Path) -> dict[str, Any]:
    for name in ("action.yml", "action.yaml"):
        path = directory / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text("utf-8"))
            except yaml.YAMLError as exc:
                raise ActionError(f"invalid {path.name}: {exc}") from None
            if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
                raise ActionError(f"{path.name} needs a 'runs' mapping")
            return data
    raise ActionError(f"no action.yml or action.yaml in '{directory}'")


@dataclass
class ActionStage:
    """An action's `pre` or `post` script (node) or entrypoint (docker), run as a step of its
    own: every `pre` when the job starts, every `post` after the main steps, last first."""

    kind: str  # pre | main | post
    name: str  # "Pre <step name>" / "Post <step name>"
    action_name: str
    directory: Path
    runs: dict[str, Any]
    inputs: dict[str, str]
    env: dict[str, str]
    state: dict[str, str]
    raw: dict[str, Any]  # the step: its `continue-on-error` applies to its pre and post too


def _with(job: _JobRun, raw: dict[str, Any], ctx: dict[str, Any], scope: _Scope) -> dict[str, str]:
    funcs = job.functions(scope)
    return {
        str(k): to_string(evaluate_value(v, ctx, funcs)) if isinstance(v, str) else to_string(v)
        for k, v in (raw.get("with") or {}).items()
    }


def _resolve(job: _JobRun, uses: str, index: int | None) -> tuple[Path, str]:
    """The directory of a `./path` or `owner/repo[/path]@ref` action (fetched if need be)."""
    if uses.startswith("./") or uses.startswith("../") or uses == ".":
        directory = (job.workspace / uses).resolve()
        if not directory.is_relative_to(job.workspace.resolve()):
            raise ActionError(f"'{uses}' points outside the workspace")
        return directory, uses
    m = _REMOTE.match(uses)
    if not m:
        raise ActionError(
            f"cannot resolve action '{uses}': use ./path, owner/repo@ref or docker://image"
        )
    directory = _fetch_remote(job, m["owner"], m["repo"], m["ref"], index)
    if m["sub"]:
        root = directory
        directory = (directory / m["sub"].lstrip("/")).resolve()
        if not directory.is_relative_to(root.resolve()):
            raise ActionError(f"'{uses}' points outside the action's repository")
    return directory, f"{m['owner']}/{m['repo']}"


def _is_checkout(uses: str) -> bool:
    m = _REMOTE.match(uses)
    return bool(m) and f"{m['owner']}/{m['repo']}".lower() == "actions/checkout" and not m["sub"]


def _stage_script(runs: dict[str, Any], using: str, kind: str) -> str | None:
    """The action's script (node) or entrypoint (docker) for `pre`, `main` or `post`."""
    if using == "docker":
        key = {"pre": "pre-entrypoint", "main": "entrypoint", "post": "post-entrypoint"}[kind]
    elif re.fullmatch(r"node\d+", using):
        key = kind
    else:
        return None
    value = runs.get(key)
    return str(value) if value else None


def prepare_pre(
    job: _JobRun, raw: dict[str, Any], name: str, ctx: dict[str, Any], scope: _Scope
) -> ActionStage | None:
    """The `pre` of a top-level step's action, or None.

    As on GitHub, a local (`./path`) action has no `pre`: the workspace is not checked out
    when the job starts. A problem resolving the action is left to the step itself to report.
    """
    uses = str(raw.get("uses") or "").strip()
    if not uses or uses.startswith(("./", "../", "docker://")) or uses == "." or _is_checkout(uses):
        return None
    try:
        directory, action_name = _resolve(job, uses, None)
        action = _load_action(directory)
        runs = action["runs"]
        using = str(runs.get("using", "")).lower()
        if not _stage_script(runs, using, "pre"):
            return None
        inputs = _inputs(job, action, _with(job, raw, ctx, scope), ctx, scope, action_name, None)
    except (ActionError, ExpressionError):
        return None
    return ActionStage(
        kind="pre",
        name=f"Pre {name}",
        action_name=action_name,
        directory=directory,
        runs=runs,
        inputs=inputs,
        env=dict(ctx.get("env") or {}),
        state={},
        raw=raw,
    )


def run_uses(
    job: _JobRun,
    raw: dict[str, Any],
    ctx: dict[str, Any],
    scope: _Scope,
    step_env: dict[str, str],
    timeout: float | None,
    index: int | None,
    *,
    name: str = "",
    state: dict[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    uses = str(raw.get("uses") or "").strip()
    funcs = job.functions(scope)
    state = {} if state is None else state
    try:
        with_ = _with(job, raw, ctx, scope)
        if uses.startswith("docker://"):
            # GitHub passes `with.args` (and `with.entrypoint`) to a docker:// step.
            args = shlex.split(with_.get("args", ""))
            entry = with_.get("entrypoint") or None
            image = uses[len("docker://") :]
            return _run_docker_image(
                job, image, {}, step_env, timeout, index, args, entrypoint=entry
            )
        if _is_checkout(uses):
            return _checkout(job, with_, step_env, timeout, index)
        directory, action_name = _resolve(job, uses, index)
        action = _load_action(directory)
    except (ActionError, ExpressionError, ValueError) as exc:
        job.log(f"##[error]{exc}", index)
        return "failure", {}

    inputs = _inputs(job, action, with_, ctx, scope, action_name, index)
    runs = action["runs"]
    using = str(runs.get("using", "")).lower()
    if using == "composite":
        # A composite action has no pre or post of its own (its steps' actions may have).
        return _composite(job, action, runs, inputs, directory, step_env, ctx, index)
    if not (re.fullmatch(r"node\d+", using) or using == "docker"):
        job.log(f"##[error]'{action_name}': unsupported runs.using '{using}'", index)
        return "failure", {}
    if _stage_script(runs, using, "post"):
        # Registered when the main step runs, whatever its outcome (`post-if` decides).
        job.post_steps.append(
            ActionStage(
                kind="post",
                name=f"Post {name or job.step_name(raw, ctx, funcs)}",
                action_name=action_name,
                directory=directory,
                runs=runs,
                inputs=inputs,
                env=dict(step_env),
                state=state,
                raw=raw,
            )
        )
    stage = ActionStage(
        kind="main",
        name=name,
        action_name=action_name,
        directory=directory,
        runs=runs,
        inputs=inputs,
        env=step_env,
        state=state,
        raw=raw,
    )
    return run_stage(job, stage, ctx, scope, timeout, index)


def run_stage(
    job: _JobRun,
    stage: ActionStage,
    ctx: dict[str, Any],
    scope: _Scope,
    timeout: float | None,
    index: int | None,
) -> tuple[str, dict[str, str]]:
    """Run a node or docker action's `pre`, main or `post`; state saved by one (GITHUB_STATE,
    `save-state`) reaches the later ones as STATE_<name>."""
    runs = stage.runs
    using = str(runs.get("using", "")).lower()
    action_path = job.executor.path(stage.directory)
    state_env = {f"STATE_{k}": v for k, v in stage.state.items()}
    env = {
        **stage.env,
        **state_env,
        **_input_env(stage.inputs),
        "GITHUB_ACTION_PATH": action_path,
    }
    script = _stage_script(runs, using, stage.kind)
    job.state_sink = stage.state
    try:
        if using == "docker":
            return _docker_action(job, stage, script, env, ctx, scope, timeout, index)
        if not script:
            job.log(f"##[error]a node action needs 'runs.{stage.kind}'", index)
            return "failure", {}
        node = job.executor.which("node", job.process_env(env, {}))
        if not node:
            job.log(
                f"##[error]'{stage.action_name}' runs on {using}, but 'node' was not found in "
                "this job's environment (install Node.js on the runner or use a container with "
                "it)",
                index,
            )
            return "failure", {}
        target = (stage.directory / script).resolve()
        if not target.is_relative_to(stage.directory.resolve()):
            job.log(f"##[error]runs.{stage.kind} points outside the action's directory", index)
            return "failure", {}
        return job.execute(
            [node, job.executor.path(target)],
            env,
            job.executor.path(job.workspace),
            timeout,
            index,
            {},
        )
    finally:
        job.state_sink = None


def dockerfile_path(directory: Path, image: str) -> str:
    """The Dockerfile of a docker action, relative to its directory (which it must be in)."""
    text = image.strip()
    if not text or text.startswith("/") or "\0" in text:
        raise ActionError(f"invalid runs.image '{image}': a Dockerfile path in the action")
    target = (directory / text).resolve()
    if not target.is_relative_to(directory.resolve()):
        raise ActionError(f"runs.image '{image}' points outside the action's directory")
    if target.is_dir():
        target = target / "Dockerfile"
    if not target.is_file():
        raise ActionError(f"runs.image '{image}': no such Dockerfile in the action")
    return target.relative_to(directory.resolve()).as_posix()


def _docker_action(
    job: _JobRun,
    stage: ActionStage,
    entrypoint: str | None,
    env: dict[str, str],
    ctx: dict[str, Any],
    scope: _Scope,
    timeout: float | None,
    index: int | None,
) -> tuple[str, dict[str, str]]:
    runs = stage.runs
    funcs = job.functions(scope)
    image = str(runs.get("image") or "")
    try:
        dockerfile = (
            None if image.startswith("docker://") else dockerfile_path(stage.directory, image)
        )
    except ActionError as exc:
        job.log(f"##[error]{exc}", index)
        return "failure", {}
    if getattr(job.executor, "run_image", None) is None:
        job.log(
            f"##[error]docker actions ('{stage.action_name}') need the docker executor; "
            f"this job runs on '{job.executor.name}'",
            index,
        )
        return "failure", {}
    action_ctx = {**ctx, "inputs": stage.inputs}
    try:
        args: list[str] = []
        if stage.kind == "main":
            # As on GitHub, `args` go to the main entrypoint only.
            args = [to_string(evaluate_value(a, action_ctx, funcs)) for a in runs.get("args") or []]
        action_env = job.evaluate_env(runs.get("env"), action_ctx, scope)
        if dockerfile is None:
            image = image[len("docker://") :]
        else:
            image = job.executor.build_image(  # type: ignore[attr-defined]
                stage.directory, dockerfile, lambda line: job.log(line, index)
            )
    except (ActionError, ExecutorError) as exc:
        job.log(f"##[error]{exc}", index)
        return "failure", {}
    return _run_docker_image(
        job, image, {}, {**env, **action_env}, timeout, index, args, entrypoint=entrypoint
    )


def _inputs(
    job: _JobRun,
    action: dict[str, Any],
    with_: dict[str, str],
    ctx: dict[str, Any],
    scope: _Scope,
    name: str,
    index: int | None,
) -> dict[str, str]:
    declared = action.get("inputs") or {}
    inputs: dict[str, str] = {}
    lowered = {k.lower(): v for k, v in with_.items()}
    for key, spec in declared.items():
        spec = spec or {}
        if key.lower() in lowered:
            inputs[key] = lowered.pop(key.lower())
        elif spec.get("default") is not None:
            default = spec["default"]
            inputs[key] = (
                to_string(evaluate_value(default, ctx, job.functions(scope)))
                if isinstance(default, str)
                else to_string(default)
            )
        else:
            if spec.get("required"):
                job.log(f"##[warning]Input required and not supplied: {key}", index)
            inputs[key] = ""
    for key, value in lowered.items():
        original = next(k for k in with_ if k.lower() == key)
        job.log(f"##[warning]Unexpected input '{original}' for '{name}'", index)
        inputs[original] = value
    return inputs


def _input_env(inputs: dict[str, str]) -> dict[str, str]:
    return {f"INPUT_{k.replace(' ', '_').upper()}": v for k, v in inputs.items()}


def _composite(
    job: _JobRun,
    action: dict[str, Any],
    runs: dict[str, Any],
    inputs: dict[str, str],
    directory: Path,
    step_env: dict[str, str],
    ctx: dict[str, Any],
    index: int | None,
) -> tuple[str, dict[str, str]]:
    from opencodehub.runner.engine import _Scope

    action_path = job.executor.path(directory)
    inner = _Scope(inputs=inputs, action_path=action_path, prefix=f"{index}_")
    steps = runs.get("steps") or []
    env = {**step_env, "GITHUB_ACTION_PATH": action_path}
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict):
            job.log("##[error]invalid composite step", index)
            return "failure", {}
        if "run" in raw and not raw.get("shell"):
            job.log("##[error]Required property is missing: shell", index)
            return "failure", {}
        job.run_step(i, raw, inner, {}, False, env)
    outputs: dict[str, str] = {}
    out_ctx = job.contexts(inner, step_env)
    for key, spec in (action.get("outputs") or {}).items():
        value = (spec or {}).get("value") if isinstance(spec, dict) else spec
        try:
            outputs[key] = to_string(interpolate(str(value or ""), out_ctx, job.functions(inner)))
        except ExpressionError as exc:
            job.log(f"##[warning]output '{key}': {exc}", index)
    return ("success" if inner.status == "success" else "failure"), outputs


def _auth_header(token: str) -> str:
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"AUTHORIZATION: basic {basic}"


def _repo_url(server_url: str, repository: str) -> str:
    return f"{server_url.rstrip('/')}/{repository}.git"


def _fetch_remote(job: _JobRun, owner: str, repo: str, ref: str, index: int | None) -> Path:
    if not job.spec.server_url:
        raise ActionError(
            f"cannot resolve action '{owner}/{repo}@{ref}': no server to fetch it from "
            "(local runs support ./path actions and actions/checkout)"
        )
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", ref) or ref.startswith("-") or ".." in ref:
        raise ActionError(f"invalid action ref '{ref}'")
    dest = job.action_cache / owner / repo / ref
    with _fetch_lock:
        if (dest / ".och-complete").exists():
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        url = _repo_url(job.spec.server_url, f"{owner}/{repo}")
        job.masker.add(base64.b64encode(f"x-access-token:{job.spec.token}".encode()).decode())
        job.log(f"Download action repository '{owner}/{repo}@{ref}'", index)
        git = ["git", "-C", str(dest), "-c", f"http.extraheader={_auth_header(job.spec.token)}"]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        for cmd in (
            ["git", "init", "-q", str(dest)],
            [*git, "fetch", "-q", "--depth=1", url, "--end-of-options", ref],
            [*git, "checkout", "-q", "--detach", "FETCH_HEAD"],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
            if proc.returncode != 0:
                shutil.rmtree(dest, ignore_errors=True)
                raise ActionError(
                    f"cannot fetch action '{owner}/{repo}@{ref}': "
                    + job.masker.mask(proc.stderr.strip().splitlines()[-1] if proc.stderr else "")
                )
        (dest / ".och-complete").write_text(ref)
    return dest


def _checkout(
    job: _JobRun,
    with_: dict[str, str],
    step_env: dict[str, str],
    timeout: float | None,
    index: int | None,
) -> tuple[str, dict[str, str]]:
    spec = job.spec
    repository = with_.get("repository") or spec.repository
    same_repo = repository.lower() == spec.repository.lower()
    if not spec.server_url:
        if same_repo:
            job.log("Using the local checkout as the workspace", index)
            return "success", {}
        job.log(f"##[error]cannot check out '{repository}': no server in a local run", index)
        return "failure", {}
    ref = with_.get("ref") or (spec.sha if same_repo else "")
    token = with_.get("token") or spec.token
    job.masker.add(token)
    job.masker.add(base64.b64encode(f"x-access-token:{token}".encode()).decode())
    try:
        depth = int(with_.get("fetch-depth") or "1")
    except ValueError:
        job.log("##[error]fetch-depth must be a number", index)
        return "failure", {}
    sub = with_.get("path") or ""
    dest = (job.workspace / sub).resolve()
    if not dest.is_relative_to(job.workspace.resolve()):
        job.log("##[error]'path' must be inside the workspace", index)
        return "failure", {}
    if dest.exists():
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    url = _repo_url(spec.server_url, repository)
    parts = urlsplit(url)
    url_key = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    path = job.executor.path(dest)
    fetch = ["git", "-C", path, "fetch", "--no-tags", "--prune", "--no-recurse-submodules"]
    if depth > 0:
        fetch.append(f"--depth={depth}")
    target = ref or "HEAD"
    if re.fullmatch(r"[0-9a-fA-F]{40}", target) or target.startswith("refs/"):
        refspec = f"+{target}:refs/remotes/origin/och-checkout"
    else:
        refspec = f"+{target}:refs/remotes/origin/och-checkout"
    commands = [
        ["git", "init", "-q", path],
        ["git", "-C", path, "config", "--local", "safe.directory", "*"],
        ["git", "-C", path, "remote", "add", "origin", url],
        [
            "git",
            "-C",
            path,
            "config",
            "--local",
            f"http.{url_key}.extraheader",
            _auth_header(token),
        ],
        [*fetch, "origin", "--end-of-options", refspec],
        [
            "git",
            "-C",
            path,
            "checkout",
            "-q",
            "--force",
            "--detach",
            "refs/remotes/origin/och-checkout",
        ],
    ]
    if not re.fullmatch(r"[0-9a-fA-F]{40}", target) and not target.startswith("refs/tags/"):
        branch = target[len("refs/heads/") :] if target.startswith("refs/heads/") else target
        if branch != "HEAD":
            commands.append(
                [
                    "git",
                    "-C",
                    path,
                    "checkout",
                    "-q",
                    "-B",
                    branch,
                    "refs/remotes/origin/och-checkout",
                ]
            )
    if _as_bool(with_.get("lfs")):
        commands.append(["git", "-C", path, "lfs", "pull"])
    env = {**step_env, "GIT_TERMINAL_PROMPT": "0"}
    job.log(f"Syncing repository: {repository}", index)
    cwd = job.executor.path(job.workspace)
    for cmd in commands:
        outcome, _ = job.execute(cmd, env, cwd, timeout, index, {})
        if outcome != "success" and cmd[3:4] == ["fetch"] and not with_.get("ref") and same_repo:
            # A server that does not serve unadvertised commits: fetch the run's ref instead,
            # the commit is its tip or in its history.
            job.log(f"Fetching {spec.ref} instead of {spec.sha}", index)
            ref_cmd = [*cmd[:-1], f"+{spec.ref}:refs/remotes/origin/och-checkout"]
            outcome, _ = job.execute(ref_cmd, env, cwd, timeout, index, {})
            if outcome == "success":
                outcome, _ = job.execute(
                    ["git", "-C", path, "update-ref", "refs/remotes/origin/och-checkout", spec.sha],
                    env,
                    cwd,
                    timeout,
                    index,
                    {},
                )
        if outcome != "success":
            return outcome, {}
    if with_.get("persist-credentials", "true").lower() == "false":
        job.execute(
            ["git", "-C", path, "config", "--local", "--unset-all", f"http.{url_key}.extraheader"],
            env,
            path,
            timeout,
            index,
            {},
        )
    return "success", {}


def _as_bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _run_docker_image(
    job: _JobRun,
    image: str,
    inputs: dict[str, str],
    step_env: dict[str, str],
    timeout: float | None,
    index: int | None,
    args: list[str] | None = None,
    entrypoint: str | None = None,
) -> tuple[str, dict[str, str]]:
    runner = getattr(job.executor, "run_image", None)
    if runner is None:
        job.log(
            f"##[error]docker actions ('{image}') need the docker executor; "
            f"this job runs on '{job.executor.name}'",
            index,
        )
        return "failure", {}
    files = job.new_files()
    env = job.process_env({**step_env, **_input_env(inputs)}, files)
    outputs: dict[str, str] = {}
    code = runner(
        image,
        args or [],
        entrypoint=entrypoint,
        env=env,
        on_output=lambda line: job.on_output(line, index, outputs),
        cancel=job.step_cancel(),
        timeout=timeout,
    )
    job.read_files(files, outputs, index)
    if code != 0:
        job.log(f"##[error]Docker run failed with exit code {code}", index)
        return "failure", outputs
    return "success", outputs
