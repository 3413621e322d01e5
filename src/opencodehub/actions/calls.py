"""Reusable workflows (`jobs.<id>.uses`): finding the called files, and where their jobs live.

When a run is created every call of its workflow is resolved, recursively: the called file is
read (the same commit for `./.github/workflows/x.yml`, the ref's commit of another repository
of this instance for `owner/repo/.github/workflows/x.yml@ref`), parsed and checked against the
call (`with`, `secrets`), and its mapping is stored in the run's `workflow_data` under
`CALLS_KEY`, keyed by the calling job's path (`call`, `call/inner`). A repository other than
the run's is looked up as the run's job token would see it, through `authorize()`, so a
private repository the caller may not read is not found.

A calling job becomes one row per matrix combination that never reaches a runner (a *call
row*). When its needs are done and its `if` holds, the service evaluates its `with:` and
`secrets:` and adds the called workflow's jobs to the run, keyed `call/build` (or
`call#<row id>/build` when the calling job has a matrix, so that each combination's jobs need
their own). The evaluated inputs and the (encrypted) secrets stay on the call row until it
completes, when its outputs replace them. Pure helpers here; the service writes the rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pygit2
import yaml
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.config import Settings
from opencodehub.core import crypto
from opencodehub.core.errors import Forbidden, NotFound
from opencodehub.repos import store
from opencodehub.repos.models import Repository

CALLS_KEY = "x-opencodehub-calls"
# The frame of a call row (its evaluated inputs and encrypted secrets) while it runs.
CALL_FRAME = "\x00call"
# A call row's second concurrency group (the called workflow's, when the calling job has one
# of its own in `concurrency_group`), kept beside the frame while the call waits or runs. Not
# queried in SQL: PostgreSQL cannot take a JSON path into a document with the frame's NUL key.
CALLED_GROUP = "x-opencodehub-called-concurrency"
# GitHub: the top-level caller and up to three levels of reusable workflows.
MAX_DEPTH = 4
# GitHub allows at most 20 distinct reusable workflows in one run.
MAX_CALLED = 20
MAX_FILE_BYTES = 512 * 1024

_SHA = re.compile(r"[0-9a-f]{40}")


def short_key(job_key: str) -> str:
    """The job's own id (`build` of `call#12/build`): its key in `needs` and `jobs`."""
    return job_key.rsplit("/", 1)[-1].split("#", 1)[0]


def call_path(job_key: str) -> str:
    """The key of a job with `#<id>` markers removed (`call#12/build` -> `call/build`)."""
    return "/".join(segment.split("#", 1)[0] for segment in job_key.split("/"))


def parent_key(job_key: str) -> str | None:
    return job_key.rsplit("/", 1)[0] if "/" in job_key else None


def calls_of(workflow_data: dict[str, Any]) -> dict[str, Any]:
    value = workflow_data.get(CALLS_KEY)
    return value if isinstance(value, dict) else {}


def workflow_mapping(workflow_data: dict[str, Any], job_key: str) -> dict[str, Any]:
    """The mapping of the workflow that defines `job_key` (the run's, or a called one)."""
    path = call_path(job_key)
    if "/" not in path:
        return workflow_data
    call = calls_of(workflow_data).get(path.rsplit("/", 1)[0]) or {}
    data = call.get("data")
    return data if isinstance(data, dict) else {}


def job_definition(workflow_data: dict[str, Any], job_key: str) -> dict[str, Any]:
    jobs = workflow_mapping(workflow_data, job_key).get("jobs") or {}
    found = jobs.get(short_key(job_key)) if isinstance(jobs, dict) else None
    return found if isinstance(found, dict) else {}


def is_call(workflow_data: dict[str, Any], job_key: str) -> bool:
    return "uses" in job_definition(workflow_data, job_key)


def without_calls(workflow_data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in workflow_data.items() if k != CALLS_KEY}


def parse_data(path: str, data: dict[str, Any]) -> Any:
    """A stored workflow mapping parsed again (it was valid when the run was made)."""
    from opencodehub.actions.workflow import parse_workflow

    return parse_workflow(path, yaml.safe_dump(without_calls(data), sort_keys=False))


def encrypt_frame(
    settings: Settings, inputs: dict[str, Any], secrets: dict[str, str]
) -> dict[str, Any]:
    return {"inputs": inputs, "secrets": crypto.encrypt(settings.secret, json.dumps(secrets))}


def frame_secrets(settings: Settings, frame: dict[str, Any]) -> dict[str, str]:
    token = frame.get("secrets")
    if not isinstance(token, str):
        return {}
    try:
        values = json.loads(crypto.decrypt(settings.secret, token))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


_LEVELS = {"none": 0, "read": 1, "write": 2}


def cap_permissions(inner: dict[str, str], caller: dict[str, str]) -> dict[str, str]:
    """A called job's token: what its workflow asks, never more than the calling job has."""
    out: dict[str, str] = {}
    for scope, level in inner.items():
        allowed = caller.get(scope, "none")
        chosen = level if _LEVELS.get(level, 0) <= _LEVELS.get(allowed, 0) else allowed
        if chosen != "none":
            out[scope] = chosen
    return out


# Resolving the calls of a run --------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    repository: Repository
    sha: str


def _read_file(settings: Settings, repository_id: int, sha: str, path: str) -> str | None:
    try:
        git = store.open_repository(settings, repository_id)
        commit = git[sha].peel(pygit2.Commit)
        entry = commit.tree[path]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    blob = git[entry.id]
    if not isinstance(blob, pygit2.Blob) or blob.size > MAX_FILE_BYTES:
        return None
    return blob.data.decode("utf-8", "replace")


def _resolve_ref(settings: Settings, repository_id: int, ref: str) -> str | None:
    git = store.open_repository(settings, repository_id)
    candidates = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for candidate in candidates:
        try:
            reference = git.references.get(candidate)
        except (ValueError, pygit2.InvalidSpecError):
            reference = None
        if reference is not None:
            return str(reference.peel(pygit2.Commit).id)
    if _SHA.fullmatch(ref):
        try:
            return str(git[ref].peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError):
            return None
    return None


def _job_token_actor(repository: Repository) -> Actor:
    """How the run's own job token sees the instance: its repository, and any other only as
    an anonymous caller sees it (see tokens.actor_for_job_token)."""
    return Actor(
        user=None,
        method="job_token",
        scopes=frozenset(),
        job_repository_id=repository.id,
        job_permissions=(("contents", "read"), ("metadata", "read")),
    )


def resolve(
    session: Session, settings: Settings, repository: Repository, sha: str, workflow: Any
) -> tuple[dict[str, Any], list[str]]:
    """Every call of `workflow` (at `sha` of `repository`), recursively: (calls by calling
    job path, errors as `file:line:column: message` lines)."""
    from opencodehub.actions.workflow import (
        WorkflowError,
        check_call,
        parse_uses,
        parse_workflow,
    )
    from opencodehub.repos import service as repos

    calls: dict[str, Any] = {}
    errors: list[str] = []
    distinct: set[tuple[int, str, str]] = set()

    def visit(
        wf: Any, source: _Source, prefix: str, depth: int, stack: list[tuple[int, str, str]]
    ) -> None:
        for key, job in wf.jobs.items():
            if job.uses is None:
                continue
            where_uses = ("jobs", key, "uses")
            if depth >= MAX_DEPTH:
                errors.append(
                    str(
                        wf.issue(
                            where_uses,
                            f"reusable workflows nest at most {MAX_DEPTH} levels "
                            "deep (the calling workflow and three below it)",
                        )
                    )
                )
                continue
            try:
                ref = parse_uses(job.uses)
            except ValueError as exc:
                errors.append(str(wf.issue(where_uses, str(exc))))
                continue
            if ref.local:
                target = source
                label = (
                    ref.path
                    if target.repository.id == repository.id
                    else (f"{target.repository.full_name}/{ref.path}@{target.sha[:12]}")
                )
            else:
                assert ref.owner is not None and ref.repo is not None and ref.ref is not None
                try:
                    found = repos.get_for(
                        session, _job_token_actor(repository), ref.owner, ref.repo
                    )
                except (NotFound, Forbidden):
                    errors.append(
                        str(
                            wf.issue(
                                where_uses,
                                f"'{job.uses}': repository '{ref.owner}/{ref.repo}' was "
                                f"not found, or {repository.full_name} may not read it",
                            )
                        )
                    )
                    continue
                target_sha = _resolve_ref(settings, found.id, ref.ref)
                if target_sha is None:
                    errors.append(
                        str(
                            wf.issue(
                                where_uses,
                                f"'{job.uses}': no branch, tag or commit '{ref.ref}' in "
                                f"{found.full_name}",
                            )
                        )
                    )
                    continue
                target = _Source(found, target_sha)
                label = f"{found.full_name}/{ref.path}@{ref.ref}"
            identity = (target.repository.id, target.sha, ref.path)
            if identity in stack:
                errors.append(
                    str(
                        wf.issue(
                            where_uses,
                            f"'{job.uses}' calls a workflow that is already calling it (a cycle)",
                        )
                    )
                )
                continue
            distinct.add(identity)
            if len(distinct) > MAX_CALLED:
                errors.append(
                    str(
                        wf.issue(
                            where_uses,
                            f"a run may call at most {MAX_CALLED} distinct reusable workflows",
                        )
                    )
                )
                return
            text = _read_file(settings, target.repository.id, target.sha, ref.path)
            if text is None:
                errors.append(
                    str(
                        wf.issue(where_uses, f"'{job.uses}': workflow file '{label}' was not found")
                    )
                )
                continue
            try:
                called = parse_workflow(label, text)
            except WorkflowError as exc:
                errors.extend(str(issue) for issue in exc.errors)
                continue
            problems = check_call(wf, job, called, label)
            if problems:
                errors.extend(str(issue) for issue in problems)
                continue
            path = f"{prefix}{key}"
            calls[path] = {
                "uses": job.uses,
                "repository_id": target.repository.id,
                "repository": target.repository.full_name,
                "sha": target.sha,
                "path": ref.path,
                "label": label,
                "data": called.raw,
            }
            visit(called, target, f"{path}/", depth + 1, [*stack, identity])

    visit(workflow, _Source(repository, sha), "", 1, [(repository.id, sha, workflow.path)])
    return calls, errors
