"""`uses:` steps: local and remote actions (composite, node, docker) and the built-in checkout."""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from opencodehub.actions.expressions import ExpressionError, evaluate_value, interpolate, to_string

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


def run_uses(
    job: _JobRun,
    raw: dict[str, Any],
    ctx: dict[str, Any],
    scope: _Scope,
    step_env: dict[str, str],
    timeout: float | None,
    index: int | None,
) -> tuple[str, dict[str, str]]:
    uses = str(raw.get("uses") or "").strip()
    funcs = job.functions(scope)
    try:
        with_ = {
            str(k): to_string(evaluate_value(v, ctx, funcs)) if isinstance(v, str) else to_string(v)
            for k, v in (raw.get("with") or {}).items()
        }
        if uses.startswith("docker://"):
            # GitHub passes `with.args` (and `with.entrypoint`) to a docker:// step.
            args = shlex.split(with_.get("args", ""))
            entry = with_.get("entrypoint") or None
            image = uses[len("docker://") :]
            return _run_docker_image(
                job, image, {}, step_env, timeout, index, args, entrypoint=entry
            )
        if uses.startswith("./") or uses.startswith("../") or uses == ".":
            directory = (job.workspace / uses).resolve()
            if not directory.is_relative_to(job.workspace.resolve()):
                raise ActionError(f"'{uses}' points outside the workspace")
            name = uses
        else:
            m = _REMOTE.match(uses)
            if not m:
                raise ActionError(
                    f"cannot resolve action '{uses}': use ./path, owner/repo@ref or docker://image"
                )
            if f"{m['owner']}/{m['repo']}".lower() == "actions/checkout" and not m["sub"]:
                return _checkout(job, with_, step_env, timeout, index)
            directory = _fetch_remote(job, m["owner"], m["repo"], m["ref"], index)
            if m["sub"]:
                directory = (directory / m["sub"].lstrip("/")).resolve()
            name = f"{m['owner']}/{m['repo']}"
        action = _load_action(directory)
    except ActionError as exc:
        job.log(f"##[error]{exc}", index)
        return "failure", {}
    except ExpressionError as exc:
        job.log(f"##[error]{exc}", index)
        return "failure", {}

    inputs = _inputs(job, action, with_, ctx, scope, name, index)
    runs = action["runs"]
    using = str(runs.get("using", "")).lower()
    action_path = job.executor.path(directory)
    if using == "composite":
        return _composite(job, action, runs, inputs, directory, step_env, ctx, index)
    if re.fullmatch(r"node\d+", using):
        main = runs.get("main")
        if not main:
            job.log("##[error]a node action needs 'runs.main'", index)
            return "failure", {}
        env = {**step_env, **_input_env(inputs), "GITHUB_ACTION_PATH": action_path}
        node = job.executor.which("node", job.process_env(env, {}))
        if not node:
            job.log(
                f"##[error]'{name}' runs on {using}, but 'node' was not found in this job's "
                "environment (install Node.js on the runner or use a container with it)",
                index,
            )
            return "failure", {}
        outputs: dict[str, str] = {}
        return job.execute(
            [node, str(Path(action_path) / str(main))],
            env,
            job.executor.path(job.workspace),
            timeout,
            index,
            outputs,
        )
    if using == "docker":
        image = str(runs.get("image") or "")
        if image.startswith("docker://"):
            args = [
                to_string(evaluate_value(a, {**ctx, "inputs": inputs}, funcs))
                for a in runs.get("args") or []
            ]
            return _run_docker_image(
                job, image[len("docker://") :], inputs, step_env, timeout, index, args
            )
        job.log(
            "##[error]docker actions built from a Dockerfile are not supported; "
            "use 'image: docker://IMAGE'",
            index,
        )
        return "failure", {}
    job.log(f"##[error]'{name}': unsupported runs.using '{using}'", index)
    return "failure", {}


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
        cancel=job.cancel,
        timeout=timeout,
    )
    job.read_files(files, outputs, index)
    if code != 0:
        job.log(f"##[error]Docker run failed with exit code {code}", index)
        return "failure", outputs
    return "success", outputs
