"""Actions logic: triggers, runs, the job graph, concurrency, dispatch and completion.

The only code that writes the Actions tables. Every state lives in the database; the queue and
the live-log hub are told after the transaction commits, so a runner never sees a job id whose
row is not visible yet. Idempotence comes from unique keys, never from the event: two workers
handling the same push insert the same `(repository, workflow, sha, event, trigger_key)` and
one of them loses.

The server never builds a shell command: values from pushes and pull requests (branch names,
titles) reach a job only as data in its JobSpec contexts, which the runner exposes as
expression contexts and environment variables.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pygit2
from sqlalchemy import bindparam, case, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.actions import calls as reusable
from opencodehub.actions import logs, tokens
from opencodehub.actions.models import (
    ActionSecret,
    ActionVariable,
    Annotation,
    Conclusion,
    JobStatus,
    JobStep,
    Runner,
    RunStatus,
    Workflow,
    WorkflowJob,
    WorkflowRun,
    WorkflowSchedule,
)
from opencodehub.actions.queue import get_queue, runner_accepts
from opencodehub.config import Settings
from opencodehub.core import crypto
from opencodehub.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from opencodehub.core.logging import get_logger
from opencodehub.core.time import isoformat, utcnow
from opencodehub.db import transaction
from opencodehub.repos import store
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository
from opencodehub.runner.jobspec import JobContexts, JobResult, JobSpec
from opencodehub.runner.protocol import LogBatch

log = get_logger("opencodehub.actions")

WORKFLOW_DIR = ".github/workflows"
MAX_WORKFLOW_BYTES = 512 * 1024
MAX_WORKFLOW_FILES = 100
HEARTBEAT_INTERVAL = 5.0
# A job whose runner has not been heard from for this long is reaped.
LEASE_SECONDS = 60.0
# Queued jobs not taken after this long are pushed to the queue again (a lost Redis list).
REENQUEUE_AFTER = timedelta(seconds=30)
MAX_REQUEUES = 1
SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"  # noqa: S105 - a name pattern

# Statements of the dispatch path (every claim, step and completion), built once: building one
# costs more than running it on SQLite; on tables, they skip the ORM's compilation too. (The
# session still autoflushes before each, as before any query.)
_JOBS = WorkflowJob.__table__
_STEPS = JobStep.__table__
_NOW = bindparam("b_now", type_=_JOBS.c.started_at.type)
_TAKE = (
    _JOBS.update()
    .where(_JOBS.c.id == bindparam("b_id"), _JOBS.c.status == JobStatus.QUEUED)
    .values(
        status=JobStatus.IN_PROGRESS,
        runner_id=bindparam("b_runner_id", type_=_JOBS.c.runner_id.type),
        runner_name=bindparam("b_runner_name", type_=_JOBS.c.runner_name.type),
        started_at=_NOW,
        heartbeat_at=_NOW,
        lease_count=_JOBS.c.lease_count + 1,
        updated_at=_NOW,
    )
)
_STILL_RUNNING = (
    select(_JOBS.c.status, _JOBS.c.runner_id)
    .where(_JOBS.c.id == bindparam("job_id"))
    .with_for_update()
)
_RUNNING_ON = (
    select(func.count())
    .select_from(_JOBS)
    .where(_JOBS.c.runner_id == bindparam("runner_id"), _JOBS.c.status == JobStatus.IN_PROGRESS)
)
_UNFINISHED_STATES = (
    select(_JOBS.c.status)
    .where(_JOBS.c.run_id == bindparam("run_id"), _JOBS.c.status != JobStatus.COMPLETED)
    .distinct()
)
_PLACE_AMONG_SIBLINGS = select(
    func.count(case((_JOBS.c.id < bindparam("job_id"), 1))), func.count()
).where(_JOBS.c.run_id == bindparam("run_id"), _JOBS.c.job_key == bindparam("job_key"))
_SECRETS = select(ActionSecret.__table__.c.name, ActionSecret.__table__.c.encrypted_value).where(
    ActionSecret.__table__.c.repository_id == bindparam("repository_id")
)
_VARIABLES = select(ActionVariable.__table__.c.name, ActionVariable.__table__.c.value).where(
    ActionVariable.__table__.c.repository_id == bindparam("repository_id")
)
_LOCK_RUN = (
    select(WorkflowRun)
    .options(lazyload("*"))  # an eager outer join cannot be locked
    .where(WorkflowRun.id == bindparam("run_id"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_STEP_KEY = (_STEPS.c.job_id == bindparam("b_job_id"), _STEPS.c.number == bindparam("b_number"))
_STEP_NAME = bindparam("b_name", type_=_STEPS.c.name.type)
_STEP_END = {
    named: _STEPS.update()
    .where(*_STEP_KEY)
    .values(
        **({"name": _STEP_NAME} if named else {}),
        status=JobStatus.COMPLETED,
        conclusion=bindparam("b_conclusion", type_=_STEPS.c.conclusion.type),
        completed_at=func.coalesce(
            _STEPS.c.completed_at, bindparam("b_now", type_=_STEPS.c.completed_at.type)
        ),
    )
    for named in (False, True)
}
_STEP_START = {
    # A start sent again after a lost answer may arrive after the step's end.
    named: _STEPS.update()
    .where(*_STEP_KEY)
    .values(
        **({"name": _STEP_NAME} if named else {}),
        status=case(
            (_STEPS.c.status == JobStatus.COMPLETED, _STEPS.c.status),
            else_=literal(JobStatus.IN_PROGRESS, _STEPS.c.status.type),
        ),
    )
    for named in (False, True)
}
_INSERT_STEP: dict[str, Any] = {}  # per dialect
_CANDIDATES: dict[tuple[str, int], Any] = {}  # per scope and limit


# Post-commit side effects ----------------------------------------------------------------------


def _enqueue_after_commit(session: Session, settings: Settings, job: WorkflowJob) -> None:
    job_id, labels = job.id, list(job.runs_on)
    queue = get_queue(settings.redis_url)
    transaction.after_commit(session, lambda: queue.push(job_id, labels))


def notify_logs_after_commit(session: Session, settings: Settings, job_id: int) -> None:
    hub = logs.hub(settings.redis_url)
    transaction.after_commit(session, lambda: hub.notify(job_id))


# Reading workflows from git --------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowFile:
    path: str
    text: str


def read_workflow_files(settings: Settings, repository_id: int, sha: str) -> list[WorkflowFile]:
    """`.github/workflows/*.yml|*.yaml` at a commit (none when the commit or folder is missing)."""
    try:
        git = store.open_repository(settings, repository_id)
        commit = git[sha].peel(pygit2.Commit)
        folder = commit.tree[WORKFLOW_DIR]
    except (KeyError, ValueError, pygit2.GitError):
        return []
    tree = git[folder.id]
    if not isinstance(tree, pygit2.Tree):
        return []
    found: list[WorkflowFile] = []
    for entry in sorted(tree, key=lambda e: e.name or ""):
        name = entry.name or ""
        if not name.endswith((".yml", ".yaml")) or entry.type_str != "blob":
            continue
        blob = git[entry.id]
        assert isinstance(blob, pygit2.Blob)
        path = f"{WORKFLOW_DIR}/{name}"
        if blob.size > MAX_WORKFLOW_BYTES:
            found.append(WorkflowFile(path, "\x00too-large"))
            continue
        found.append(WorkflowFile(path, blob.data.decode("utf-8", "replace")))
        if len(found) >= MAX_WORKFLOW_FILES:
            break
    return found


def changed_paths(settings: Settings, repository_id: int, before: str, after: str) -> list[str]:
    """Paths a push changed (for `paths:` filters); a new branch compares with the parent."""
    try:
        git = store.open_repository(settings, repository_id)
        new = git[after].peel(pygit2.Commit)
        if before and before.strip("0"):
            old_tree = git[before].peel(pygit2.Commit).tree
        elif new.parents:
            old_tree = new.parents[0].tree
        else:
            return [entry.path for entry in _walk_tree(git, new.tree, "")]
        diff = git.diff(old_tree, new.tree)
    except (KeyError, ValueError, pygit2.GitError):
        return []
    paths: list[str] = []
    for patch in diff.deltas:
        paths.append(patch.new_file.path)
        if patch.old_file.path != patch.new_file.path:
            paths.append(patch.old_file.path)
    return paths


@dataclass(frozen=True)
class _Entry:
    path: str


def _walk_tree(git: pygit2.Repository, tree: pygit2.Tree, prefix: str) -> Iterable[_Entry]:
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.type_str == "tree":
            sub = git[entry.id]
            assert isinstance(sub, pygit2.Tree)
            yield from _walk_tree(git, sub, path + "/")
        else:
            yield _Entry(path)


def parse(file: WorkflowFile) -> tuple[Any, str | None]:
    """(Workflow, None) or (None, the parser's `file:line:column: message` lines)."""
    from opencodehub.actions.workflow import WorkflowError, parse_workflow

    if file.text == "\x00too-large":
        return None, f"{file.path}:1:1: the workflow file is larger than {MAX_WORKFLOW_BYTES} bytes"
    try:
        return parse_workflow(file.path, file.text), None
    except WorkflowError as exc:
        return None, "\n".join(str(issue) for issue in exc.errors) or str(exc)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# Triggers ---------------------------------------------------------------------------------------


@dataclass
class Trigger:
    event: str
    trigger_key: str
    head_sha: str
    head_ref: str
    actor_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    is_fork: bool = False
    display_title: str = ""
    # For pushes and pull requests: what the workflow's filters see.
    action: str = ""
    base_ref: str = ""
    changed: list[str] | None = None


def _matches(workflow: Any, trigger: Trigger) -> bool:
    if trigger.event == "push":
        return bool(workflow.matches_push(trigger.head_ref, trigger.changed))
    if trigger.event in ("pull_request", "pull_request_target"):
        return bool(
            workflow.matches_pull_request(
                trigger.action, trigger.base_ref, trigger.changed, event=trigger.event
            )
        )
    return bool(workflow.triggered_by(trigger.event))


def runs_for_trigger(
    session: Session,
    settings: Settings,
    repository: Repository,
    trigger: Trigger,
    files: Sequence[WorkflowFile] | None = None,
) -> list[WorkflowRun]:
    """Create a run for every workflow at the trigger's commit that the event matches. An
    invalid workflow gets a failed run showing the parser's errors (for push and pull request,
    where GitHub shows them too)."""
    if files is None:
        files = read_workflow_files(settings, repository.id, trigger.head_sha)
    created: list[WorkflowRun] = []
    for file in files:
        workflow, error = parse(file)
        if workflow is None:
            if trigger.event in ("push", "pull_request", "pull_request_target"):
                run = _insert_run(session, repository, file.path, file.path, trigger, {}, error)
                if run is not None:
                    created.append(run)
            continue
        if not _matches(workflow, trigger):
            continue
        run = create_run(session, settings, repository, workflow, trigger)
        if run is not None:
            created.append(run)
    return created


def _branch_of(ref: str) -> str:
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    if ref.startswith("refs/tags/"):
        return ref[len("refs/tags/") :]
    return ref


def _upsert_workflow(session: Session, repository_id: int, path: str, name: str) -> Workflow:
    found = session.scalar(
        select(Workflow).where(Workflow.repository_id == repository_id, Workflow.path == path)
    )
    if found is not None:
        if name and found.name != name:
            found.name = name
        return found
    try:
        with session.begin_nested():
            row = Workflow(repository_id=repository_id, path=path, name=name or path)
            session.add(row)
            session.flush()
            return row
    except IntegrityError:
        found = session.scalar(
            select(Workflow).where(Workflow.repository_id == repository_id, Workflow.path == path)
        )
        assert found is not None
        return found


def _insert_run(
    session: Session,
    repository: Repository,
    path: str,
    name: str,
    trigger: Trigger,
    workflow_data: dict[str, Any],
    error: str | None,
) -> WorkflowRun | None:
    """Insert the run with the next number of its workflow; None when this trigger already made
    one (another worker won)."""
    workflow = _upsert_workflow(session, repository.id, path, name)
    existing = session.scalar(
        select(WorkflowRun.id).where(
            WorkflowRun.repository_id == repository.id,
            WorkflowRun.workflow_path == path,
            WorkflowRun.head_sha == trigger.head_sha,
            WorkflowRun.event == trigger.event,
            WorkflowRun.trigger_key == trigger.trigger_key,
        )
    )
    if existing is not None:
        return None
    for _attempt in range(5):
        number = (
            session.scalar(
                select(func.max(WorkflowRun.run_number)).where(
                    WorkflowRun.repository_id == repository.id, WorkflowRun.workflow_path == path
                )
            )
            or 0
        ) + 1
        now = utcnow()
        run = WorkflowRun(
            repository_id=repository.id,
            workflow_id=workflow.id,
            workflow_path=path,
            name=name,
            display_title=trigger.display_title[:1024],
            run_number=number,
            event=trigger.event,
            trigger_key=trigger.trigger_key,
            head_sha=trigger.head_sha,
            head_ref=trigger.head_ref,
            head_branch=_branch_of(trigger.head_ref)[:255],
            actor_id=trigger.actor_id,
            triggering_actor_id=trigger.actor_id,
            workflow_data=_json_safe(workflow_data),
            event_payload=_json_safe(trigger.payload),
            inputs=_json_safe(trigger.inputs),
            is_fork=trigger.is_fork,
            status=RunStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        if error is not None:
            run.status = RunStatus.COMPLETED
            run.conclusion = Conclusion.FAILURE
            run.error = error
            run.completed_at = now
        try:
            with session.begin_nested():
                session.add(run)
                session.flush()
        except IntegrityError:
            duplicate = session.scalar(
                select(WorkflowRun.id).where(
                    WorkflowRun.repository_id == repository.id,
                    WorkflowRun.workflow_path == path,
                    WorkflowRun.head_sha == trigger.head_sha,
                    WorkflowRun.event == trigger.event,
                    WorkflowRun.trigger_key == trigger.trigger_key,
                )
            )
            if duplicate is not None:
                return None
            continue  # the run number was taken meanwhile: take the next one
        return run
    raise Conflict("could not number the workflow run; try again")


# Contexts ---------------------------------------------------------------------------------------


def github_context(settings: Settings, run: WorkflowRun) -> dict[str, Any]:
    repository = run.repository
    base_url = settings.effective_base_url
    actor = run.actor.username if run.actor else ""
    ref = run.head_ref
    payload = dict(run.event_payload or {})
    context: dict[str, Any] = {
        "event_name": run.event,
        "event": payload,
        "sha": run.head_sha,
        "ref": ref,
        "ref_name": _branch_of(ref),
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
        "ref_protected": False,
        "head_ref": payload.get("pull_request", {}).get("head", {}).get("ref", "")
        if run.event in ("pull_request", "pull_request_target")
        else "",
        "base_ref": payload.get("pull_request", {}).get("base", {}).get("ref", "")
        if run.event in ("pull_request", "pull_request_target")
        else "",
        "repository": repository.full_name,
        "repository_id": str(repository.id),
        "repository_owner": repository.owner.username,
        "repository_owner_id": str(repository.owner_id),
        "repositoryUrl": f"{base_url}/{repository.full_name}.git",
        "actor": actor,
        "actor_id": str(run.actor_id or ""),
        "triggering_actor": run.triggering_actor.username if run.triggering_actor else actor,
        "run_id": str(run.id),
        "run_number": str(run.run_number),
        "run_attempt": str(run.run_attempt),
        "workflow": run.name,
        "workflow_ref": f"{repository.full_name}/{run.workflow_path}@{ref}",
        "workflow_sha": run.head_sha,
        "server_url": base_url,
        "api_url": f"{base_url}/api/v3",
        "graphql_url": f"{base_url}/api/graphql",
        "retention_days": "90",
        "secret_source": "None" if run.is_fork else "Actions",
    }
    return context


def _secrets(session: Session, settings: Settings, run: WorkflowRun) -> dict[str, str]:
    if run.is_fork:
        return {}
    rows = session.execute(_SECRETS, {"repository_id": run.repository_id}).all()
    values: dict[str, str] = {}
    for name, encrypted in rows:
        try:
            values[name] = crypto.decrypt(settings.secret, encrypted)
        except ValueError:
            log.warning("an Actions secret could not be decrypted", secret=name)
    return values


def _variables(session: Session, repository_id: int) -> dict[str, str]:
    rows = session.execute(_VARIABLES, {"repository_id": repository_id}).all()
    return {name: value for name, value in rows}


def _base_contexts(session: Session, settings: Settings, run: WorkflowRun) -> dict[str, Any]:
    return {
        "github": github_context(settings, run),
        "inputs": dict(run.inputs or {}),
        "vars": _variables(session, run.repository_id),
        "env": {},
    }


# Creating runs ----------------------------------------------------------------------------------


def _expand(job: Any, contexts: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's matrix combinations ([{}] without a matrix); MatrixError past the limit."""
    from opencodehub.actions.matrix import expand_matrix

    return [dict(combo) for combo in expand_matrix(job.strategy, contexts)]


def _evaluate(value: Any, contexts: dict[str, Any]) -> Any:
    from opencodehub.actions.expressions import evaluate_value

    return evaluate_value(value, contexts)


def _labels(job: Any, contexts: dict[str, Any]) -> list[str]:
    value = _evaluate(job.runs_on, contexts)
    if isinstance(value, dict):
        value = value.get("labels", [])
    if isinstance(value, str):
        value = [value]
    return [str(label).strip() for label in value or [] if str(label).strip()]


def create_run(
    session: Session,
    settings: Settings,
    repository: Repository,
    workflow: Any,
    trigger: Trigger,
) -> WorkflowRun | None:
    """A run of `workflow` for `trigger` with its jobs (matrices expanded); None if this
    trigger already created one."""
    from opencodehub.actions.expressions import ExpressionError, interpolate

    found_calls, call_errors = reusable.resolve(
        session, settings, repository, trigger.head_sha, workflow
    )
    data = {**workflow.raw, reusable.CALLS_KEY: found_calls} if found_calls else workflow.raw
    run = _insert_run(session, repository, workflow.path, workflow.name, trigger, data, None)
    if run is None:
        return None
    session.refresh(run)
    if call_errors:
        return _fail_run(session, settings, run, "\n".join(call_errors))
    contexts = _base_contexts(session, settings, run)
    if workflow.run_name:
        try:
            run.display_title = interpolate(workflow.run_name, contexts)[:1024]
        except ExpressionError as exc:
            return _fail_run(session, settings, run, f"{workflow.path}: run-name: {exc}")
    if workflow.concurrency is not None:
        try:
            run.concurrency_group = (
                str(interpolate(workflow.concurrency.group, contexts))[:255] or None
            )
            cancel = workflow.concurrency.cancel_in_progress
            if isinstance(cancel, str):
                cancel = bool(_evaluate(cancel, contexts))
            run.cancel_in_progress = bool(cancel)
        except ExpressionError as exc:
            return _fail_run(session, settings, run, f"{workflow.path}: concurrency: {exc}")
    return _start_jobs(session, settings, run, workflow, contexts)


def _start_jobs(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    workflow: Any,
    contexts: dict[str, Any],
) -> WorkflowRun:
    """Add the jobs of a new run (or of a new attempt) and move it: it waits behind its
    concurrency group, or its first jobs are queued. A job that cannot be made fails the run."""
    try:
        jobs = _job_rows(
            settings,
            run,
            workflow,
            contexts,
            prefix="",
            name_prefix="",
            existing=0,
            caller_permissions=None,
        )
    except _JobsError as exc:
        return _fail_run(session, settings, run, str(exc))
    session.add_all(jobs)
    session.flush()
    _apply_concurrency(session, settings, run)
    if run.status == RunStatus.QUEUED:
        advance(session, settings, run)
    return run


class _JobsError(ValueError):
    """A workflow's jobs could not be made (a matrix or `runs-on` failed, too many jobs)."""


def _job_rows(
    settings: Settings,
    run: WorkflowRun,
    workflow: Any,
    contexts: dict[str, Any],
    *,
    prefix: str,
    name_prefix: str,
    existing: int,
    caller_permissions: dict[str, str] | None,
) -> list[WorkflowJob]:
    """The rows of `workflow`'s jobs, one per matrix combination, keyed `{prefix}{key}`. A job
    calling a reusable workflow gets call rows (no runner takes them; see calls.py)."""
    from opencodehub.actions.expressions import ExpressionError
    from opencodehub.actions.workflow import job_display_name

    jobs: list[WorkflowJob] = []
    limit = settings.actions_max_jobs_per_run
    for key, job in workflow.jobs.items():
        try:
            combos = _expand(job, contexts)
        except (ValueError, ExpressionError) as exc:
            raise _JobsError(f"{workflow.path}: job '{key}': {exc}") from None
        if existing + len(jobs) + len(combos) > limit:
            raise _JobsError(
                f"{workflow.path}: the run would have more than {limit} jobs "
                f"(job '{key}' expands to {len(combos)}); reduce the matrix"
            )
        permissions = tokens.resolve_permissions(
            workflow.permissions, job.permissions, read_only=run.is_fork
        )
        if caller_permissions is not None:
            permissions = reusable.cap_permissions(permissions, caller_permissions)
        for combo in combos:
            job_contexts = {**contexts, "matrix": combo}
            try:
                labels = [] if job.uses else _labels(job, job_contexts)
                name = job_display_name(job, combo, job_contexts)
            except (ValueError, ExpressionError) as exc:
                raise _JobsError(f"{workflow.path}: job '{key}': {exc}") from None
            jobs.append(
                WorkflowJob(
                    run_id=run.id,
                    repository_id=run.repository_id,
                    job_key=f"{prefix}{key}",
                    name=f"{name_prefix}{name}"[:512],
                    matrix=_json_safe(combo),
                    needs=[f"{prefix}{need}" for need in job.needs],
                    runs_on=labels,
                    status=JobStatus.WAITING,
                    permissions=permissions,
                )
            )
    return jobs


# Reusable workflows -----------------------------------------------------------------------------


def _definition(run: WorkflowRun, job_key: str) -> dict[str, Any]:
    return reusable.job_definition(run.workflow_data or {}, job_key)


def _call_row(session: Session, run: WorkflowRun, job_key: str) -> WorkflowJob | None:
    """The call row whose called workflow holds the job `job_key` (None at the top level)."""
    parent = reusable.parent_key(job_key)
    if parent is None:
        return None
    last = parent.rsplit("/", 1)[-1]
    if "#" in last:
        row = session.get(WorkflowJob, int(last.split("#", 1)[1]))
        return row if row is not None and row.run_id == run.id else None
    return session.scalar(
        select(WorkflowJob)
        .where(WorkflowJob.run_id == run.id, WorkflowJob.job_key == parent)
        .limit(1)
    )


def _frame(session: Session, run: WorkflowRun, job_key: str) -> dict[str, Any] | None:
    row = _call_row(session, run, job_key)
    if row is None:
        return None
    frame = (row.outputs or {}).get(reusable.CALL_FRAME)
    return frame if isinstance(frame, dict) else {}


def _job_inputs(session: Session, run: WorkflowRun, job_key: str) -> dict[str, Any]:
    """The `inputs` context of a job: the run's, or its called workflow's."""
    frame = _frame(session, run, job_key)
    if frame is None:
        return dict(run.inputs or {})
    inputs = frame.get("inputs")
    return dict(inputs) if isinstance(inputs, dict) else {}


def _job_secrets(
    session: Session, settings: Settings, run: WorkflowRun, job_key: str
) -> dict[str, str]:
    """The `secrets` context of a job: the repository's, or what its caller passed."""
    frame = _frame(session, run, job_key)
    if frame is None:
        return _secrets(session, settings, run)
    return reusable.frame_secrets(settings, frame)


def _inner_prefix(call: WorkflowJob, jobs: Sequence[WorkflowJob]) -> str:
    """The key prefix of a call row's jobs: `call/`, or `call#<id>/` when the calling job has
    a matrix (each combination's jobs must need their own)."""
    siblings = sum(1 for other in jobs if other.job_key == call.job_key)
    return f"{call.job_key}#{call.id}/" if siblings > 1 else f"{call.job_key}/"


@dataclass(frozen=True)
class _PreparedCall:
    """A call row's evaluated `with:` and `secrets:`, and the groups that govern the call."""

    called: Any
    inputs: dict[str, Any]
    secrets: dict[str, str]
    # The raw `concurrency:` values that apply, each with the contexts it is evaluated in, in
    # the order they are acquired: the calling job's, then the called workflow's.
    concurrency: list[tuple[Any, dict[str, Any]]]


def _prepare_call(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    call: WorkflowJob,
    contexts: dict[str, Any],
) -> _PreparedCall:
    """Evaluate a call row's `with:` and `secrets:` and check them against the called
    workflow (ValueError or ExpressionError when they do not fit).

    The call's jobs are one unit under up to two concurrency groups, as on GitHub: the calling
    job's own `concurrency:` (evaluated in the caller's contexts) and the called workflow's
    top-level `concurrency:` (evaluated in the called workflow's contexts: the call's `inputs`
    and the caller's `github`). Both must be held before the called jobs are added."""
    from opencodehub.actions.expressions import to_string

    call_info = reusable.calls_of(run.workflow_data or {}).get(reusable.call_path(call.job_key))
    definition = _definition(run, call.job_key)
    if not call_info:
        raise ValueError("the called workflow is missing from the run")
    called = reusable.parse_data(str(call_info["label"]), call_info["data"])
    spec = called.call
    with_ = definition.get("with") or {}
    inputs: dict[str, Any] = {}
    for name, item in spec.inputs.items():
        given = name in with_
        value = _evaluate(with_[name], contexts) if given else None
        if not given and isinstance(item.default, str) and "${{" in item.default:
            value, given = _evaluate(item.default, contexts), True
        inputs[name] = item.coerce(value, given)
    parent_secrets = _job_secrets(session, settings, run, call.job_key)
    raw_secrets = definition.get("secrets")
    if raw_secrets == "inherit":
        secrets = dict(parent_secrets)
    else:
        scope = {**contexts, "secrets": parent_secrets}
        secrets = {
            str(name): to_string(_evaluate(expr, scope))
            for name, expr in (raw_secrets or {}).items()
        }
    missing = [n for n, required in spec.secrets.items() if required and not secrets.get(n)]
    if missing:
        raise ValueError(f"secret '{missing[0]}' of '{call_info['label']}' is required")
    secrets.pop("GITHUB_TOKEN", None)
    concurrency: list[tuple[Any, dict[str, Any]]] = []
    if definition.get("concurrency") is not None:
        concurrency.append((definition["concurrency"], contexts))
    called_concurrency = (call_info.get("data") or {}).get("concurrency")
    if called_concurrency is not None:
        called_contexts = {**_base_contexts(session, settings, run), "inputs": inputs}
        concurrency.append((called_concurrency, called_contexts))
    return _PreparedCall(called, inputs, secrets, concurrency)


def _expand_call(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    call: WorkflowJob,
    jobs: list[WorkflowJob],
    prepared: _PreparedCall,
) -> None:
    """A call row whose needs are done, whose `if` holds and whose group lets it start: keep
    its inputs and secrets on it and add the called jobs."""
    now = utcnow()
    # A compare-and-set, so that two workers advancing the run add the called jobs once.
    taken = session.execute(
        update(WorkflowJob)
        .where(
            WorkflowJob.id == call.id,
            WorkflowJob.status == JobStatus.WAITING,
            WorkflowJob.started_at.is_(None),
        )
        .values(started_at=now)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        session.refresh(call)
        return
    call.started_at = now
    call.outputs = {
        **(call.outputs or {}),  # the called workflow's group, when the call holds two
        reusable.CALL_FRAME: reusable.encrypt_frame(settings, prepared.inputs, prepared.secrets),
    }
    try:
        rows = _job_rows(
            settings,
            run,
            prepared.called,
            {**_base_contexts(session, settings, run), "inputs": prepared.inputs},
            prefix=_inner_prefix(call, jobs),
            name_prefix=f"{call.name} / ",
            existing=len(jobs),
            caller_permissions=dict(call.permissions or {}),
        )
    except ValueError as exc:
        groups = _held_groups(call)
        _finish_job(call, Conclusion.FAILURE, error=f"job '{call.name}': {exc}")
        session.flush()
        _start_next_in_job_group(session, settings, call, groups)
        return
    session.add_all(rows)
    session.flush()
    jobs.extend(rows)


def _settle_calls(
    session: Session, settings: Settings, run: WorkflowRun, jobs: Sequence[WorkflowJob]
) -> bool:
    """Complete the call rows whose called jobs all completed (result, then the outputs of
    `on.workflow_call.outputs`), and cancel what is left of a call row that ended early.
    True when something changed."""
    from opencodehub.actions.expressions import ExpressionError, interpolate

    data = run.workflow_data or {}
    if not reusable.calls_of(data):
        return False
    changed = False
    for call in jobs:
        if call.started_at is None or not reusable.is_call(data, call.job_key):
            continue
        prefix = _inner_prefix(call, jobs)
        inner = [job for job in jobs if job.job_key.startswith(prefix)]
        if call.status == JobStatus.COMPLETED:
            for job in inner:
                if job.status != JobStatus.COMPLETED:
                    _cancel_job(session, settings, run, job)
                    changed = True
            continue
        if call.status != JobStatus.WAITING or any(
            job.status != JobStatus.COMPLETED for job in inner
        ):
            continue
        frame = (call.outputs or {}).get(reusable.CALL_FRAME) or {}
        direct = [job for job in inner if "/" not in job.job_key[len(prefix) :]]
        jobs_context = needs_context(direct, sorted({job.job_key for job in direct}))
        result = _combined([job.conclusion for job in inner]) if inner else "success"
        conclusion = Conclusion.CANCELLED if call.cancel_requested else Conclusion(result)
        outputs: dict[str, Any] = {}
        error = None
        call_info = reusable.calls_of(data).get(reusable.call_path(call.job_key)) or {}
        declared = ((call_info.get("data") or {}).get("on") or {}).get("workflow_call") or {}
        scope = {
            **_base_contexts(session, settings, run),
            "inputs": dict(frame.get("inputs") or {}),
            "jobs": jobs_context,
        }
        for name, spec in (declared.get("outputs") or {}).items():
            try:
                outputs[str(name)] = interpolate(str((spec or {}).get("value", "")), scope)
            except ExpressionError as exc:
                conclusion, error = Conclusion.FAILURE, f"outputs.{name}: {exc}"
        groups = _held_groups(call)
        _finish_job(call, conclusion, error=error)
        call.outputs = {k: str(v)[: 1024 * 1024] for k, v in outputs.items()}
        changed = True
        session.flush()
        if conclusion == Conclusion.FAILURE:
            # The calling job failed as a matrix job fails: the same fail-fast.
            _fail_fast(session, settings, run, call)
        _start_next_in_job_group(session, settings, call, groups)
    if changed:
        session.flush()
    return changed


def _require_no_call_frame(job: WorkflowJob) -> None:
    # A call row's frame (inputs, encrypted secrets) and its second group never outlive the
    # call: once it ended it holds no group, and its outputs are what later jobs read.
    hidden = (reusable.CALL_FRAME, reusable.CALLED_GROUP)
    if job.outputs and any(key in job.outputs for key in hidden):
        job.outputs = {k: v for k, v in job.outputs.items() if k not in hidden}


def _fail_run(session: Session, settings: Settings, run: WorkflowRun, error: str) -> WorkflowRun:
    run.status = RunStatus.COMPLETED
    run.conclusion = Conclusion.FAILURE
    run.error = error
    run.completed_at = utcnow()
    session.flush()
    return run


def _apply_concurrency(session: Session, settings: Settings, run: WorkflowRun) -> None:
    """One run at a time per group: cancel-in-progress cancels the older ones; otherwise the
    new run waits (pending), and an older pending run is cancelled, as on GitHub."""
    if not run.concurrency_group:
        return
    others = session.scalars(
        select(WorkflowRun)
        .where(
            WorkflowRun.repository_id == run.repository_id,
            WorkflowRun.concurrency_group == run.concurrency_group,
            WorkflowRun.status != RunStatus.COMPLETED,
            WorkflowRun.id != run.id,
        )
        .order_by(WorkflowRun.id)
    ).all()
    active = False
    for other in others:
        if run.cancel_in_progress or other.status == RunStatus.PENDING:
            cancel_run(session, settings, other)
        else:
            active = True
    if active:
        run.status = RunStatus.PENDING
    session.flush()


def _start_next_in_group(session: Session, settings: Settings, finished: WorkflowRun) -> None:
    if not finished.concurrency_group:
        return
    busy = session.scalar(
        select(func.count()).where(
            WorkflowRun.repository_id == finished.repository_id,
            WorkflowRun.concurrency_group == finished.concurrency_group,
            WorkflowRun.status.in_((RunStatus.QUEUED, RunStatus.IN_PROGRESS)),
        )
    )
    if busy:
        return
    waiting = session.scalar(
        select(WorkflowRun)
        .where(
            WorkflowRun.repository_id == finished.repository_id,
            WorkflowRun.concurrency_group == finished.concurrency_group,
            WorkflowRun.status == RunStatus.PENDING,
        )
        .order_by(WorkflowRun.id)
        .limit(1)
    )
    if waiting is not None:
        waiting.status = RunStatus.QUEUED
        advance(session, settings, waiting)


# The job graph ----------------------------------------------------------------------------------


def _combined(results: Sequence[Conclusion | None]) -> str:
    values = [str(result) if result else "failure" for result in results]
    if any(value == "failure" for value in values):
        return "failure"
    if any(value == "cancelled" for value in values):
        return "cancelled"
    if values and all(value == "skipped" for value in values):
        return "skipped"
    return "success"


def needs_context(jobs: Sequence[WorkflowJob], needs: Sequence[str]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for key in needs:
        group = [job for job in jobs if job.job_key == key]
        outputs: dict[str, Any] = {}
        for job in group:
            outputs.update(job.outputs or {})
        context[reusable.short_key(key)] = {
            "result": _combined([job.conclusion for job in group]),
            "outputs": outputs,
        }
    return context


def _if_holds(
    run: WorkflowRun, job: WorkflowJob, contexts: dict[str, Any], needs: dict[str, Any]
) -> bool:
    from opencodehub.actions.expressions import evaluate_if

    definition = _definition(run, job.job_key)
    results = [value["result"] for value in needs.values()]
    run_cancelled = run.conclusion == Conclusion.CANCELLED or run.cancel_requested
    status_functions = {
        "success": lambda: not run_cancelled and all(r == "success" for r in results),
        "failure": lambda: any(r == "failure" for r in results),
        "cancelled": lambda: run_cancelled,
        "always": lambda: True,
    }
    return evaluate_if(definition.get("if"), contexts, status_functions)


def advance(session: Session, settings: Settings, run: WorkflowRun) -> None:
    """Queue every waiting job whose needs are done and whose `if` holds; skip those whose `if`
    fails; complete the run when every job is done."""
    if run.status in (RunStatus.PENDING, RunStatus.COMPLETED):
        return
    # A group freed while a run moves wakes the runs waiting for it, this one included (a call
    # cancelled by a newer one, a call row ending in _settle_calls): a run reached again from
    # inside its own advance takes one more pass there instead of moving twice at once.
    moving: set[int] = session.info.setdefault("actions_advancing", set())
    again: set[int] = session.info.setdefault("actions_advance_again", set())
    if run.id in moving:
        again.add(run.id)
        return
    moving.add(run.id)
    try:
        _advance(session, settings, run, again)
    finally:
        moving.discard(run.id)
        again.discard(run.id)


def _advance(session: Session, settings: Settings, run: WorkflowRun, again: set[int]) -> None:
    from opencodehub.actions.expressions import ExpressionError

    jobs = session.scalars(
        select(WorkflowJob).where(WorkflowJob.run_id == run.id).order_by(WorkflowJob.id)
    ).all()
    jobs = list(jobs)
    contexts = None
    changed = True
    while changed:
        changed = _settle_calls(session, settings, run, jobs)
        for job in list(jobs):
            if job.status != JobStatus.WAITING or job.started_at is not None:
                continue  # a started call row waits for its called jobs
            deps = [other for other in jobs if other.job_key in job.needs]
            if any(dep.status != JobStatus.COMPLETED for dep in deps):
                continue
            if contexts is None:
                contexts = _base_contexts(session, settings, run)
            needs = needs_context(jobs, job.needs)
            job_contexts = {**contexts, "needs": needs, "matrix": job.matrix}
            if "/" in job.job_key:
                job_contexts["inputs"] = _job_inputs(session, run, job.job_key)
            try:
                holds = _if_holds(run, job, job_contexts, needs)
            except ExpressionError as exc:
                _finish_job(job, Conclusion.FAILURE, error=f"if: {exc}")
                changed = True
                continue
            if not holds:
                cancelled = run.cancel_requested
                _finish_job(job, Conclusion.CANCELLED if cancelled else Conclusion.SKIPPED)
                _report_status(session, settings, run, job)
                changed = True
                continue
            if not _within_max_parallel(run, job, jobs, job_contexts):
                continue
            prepared = None
            if reusable.is_call(run.workflow_data or {}, job.job_key):
                try:
                    prepared = _prepare_call(session, settings, run, job, job_contexts)
                except (ValueError, ExpressionError) as exc:
                    _finish_job(job, Conclusion.FAILURE, error=f"job '{job.name}': {exc}")
                    session.flush()
                    changed = True
                    continue
            try:
                if prepared is not None:
                    may_start = _call_concurrency_allows(session, settings, run, job, prepared)
                else:
                    may_start = _job_concurrency_allows(
                        session,
                        settings,
                        run,
                        job,
                        _definition(run, job.job_key).get("concurrency"),
                        job_contexts,
                    )
            except ExpressionError as exc:
                groups = _held_groups(job)
                _finish_job(job, Conclusion.FAILURE, error=f"concurrency: {exc}")
                session.flush()
                _start_next_in_job_group(session, settings, job, groups)
                changed = True
                continue
            if job.status == JobStatus.COMPLETED:  # superseded by a newer pending job
                changed = True
                continue
            if not may_start:
                continue
            if prepared is not None:
                _expand_call(session, settings, run, job, jobs, prepared)
                changed = True
                continue
            now = utcnow()
            job.status = JobStatus.QUEUED
            job.queued_at = now
            job.enqueued_at = now
            session.flush()
            _enqueue_after_commit(session, settings, job)
            _report_status(session, settings, run, job)
        if run.id in again:
            again.discard(run.id)
            changed = True
    _settle_run(session, settings, run, jobs)


def _within_max_parallel(
    run: WorkflowRun, job: WorkflowJob, jobs: Sequence[WorkflowJob], contexts: dict[str, Any]
) -> bool:
    """`strategy.max-parallel`: at most that many of a matrix's jobs queued or running (for a
    calling job: at most that many of its called workflows with jobs not done)."""
    limit = _max_parallel(run, job.job_key, contexts)
    if limit is None:
        return True
    active = sum(
        1
        for other in jobs
        if other.job_key == job.job_key and other.id != job.id and _is_active(other)
    )
    return active < limit


def _is_active(job: WorkflowJob) -> bool:
    """Queued or running: a call row runs from when it holds its first concurrency group
    (waiting for the called workflow's) or its called jobs were added, until it ends."""
    if job.status == JobStatus.WAITING:
        return job.started_at is not None or _called_group(job) is not None
    return job.status != JobStatus.COMPLETED


def _called_group(job: WorkflowJob) -> str | None:
    """A call row's second group (the called workflow's), recorded once it holds its first."""
    value = (job.outputs or {}).get(reusable.CALLED_GROUP)
    return value if isinstance(value, str) and value else None


def _holds(job: WorkflowJob, group: str) -> bool:
    """Whether `job` holds `group` rather than waits for it. A call row with two groups holds
    the first (the calling job's) while it waits for the second (the called workflow's), and
    the second from when its called jobs are added."""
    if not _is_active(job):
        return False
    if job.status == JobStatus.WAITING and job.started_at is None:
        return group == job.concurrency_group
    return True


def _held_groups(job: WorkflowJob) -> list[str]:
    """The groups `job` holds now (read before it ends: ending clears its second group)."""
    return [group for group in _groups_of(job) if _holds(job, group)]


def _max_parallel(run: WorkflowRun, job_key: str, contexts: dict[str, Any]) -> int | None:
    from opencodehub.actions.expressions import ExpressionError

    definition = _definition(run, job_key)
    strategy = definition.get("strategy")
    if not isinstance(strategy, dict) or strategy.get("max-parallel") is None:
        return None
    try:
        value = int(_evaluate(strategy["max-parallel"], contexts))
    except (ExpressionError, TypeError, ValueError):
        return None  # the parser vetted literals; an odd expression result means no limit
    return max(1, value)


def _job_concurrency_allows(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    job: WorkflowJob,
    raw: Any,
    contexts: dict[str, Any],
) -> bool:
    """A job's own `concurrency:` (`raw`, evaluated in `contexts`), across every run of the
    repository, as on GitHub: one job of a group runs and one waits; a newer waiting job
    cancels the older waiting one, and `cancel-in-progress` cancels the running one instead
    of waiting for it."""
    found = _evaluate_group(raw, contexts)
    if found is None:
        return True
    job.concurrency_group = found[0]
    return _acquire_group(session, settings, run, job, *found)


def _call_concurrency_allows(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    call: WorkflowJob,
    prepared: _PreparedCall,
) -> bool:
    """A call row's groups: the calling job's `concurrency:` and the called workflow's, each
    acquired as a job-level group, in that order, the call row holding both for all its
    called jobs. The first is kept in `concurrency_group`, the second beside the call's frame
    (`CALLED_GROUP`), which also marks the first as held while the call waits for the second.

    The same group on both sides is acquired once: the call already holds it through its
    caller, and waiting for it again would be waiting for itself (GitHub reports a deadlock
    there; here the called workflow's group is satisfied by its caller's)."""
    groups: list[tuple[str, bool]] = []
    for raw, contexts in prepared.concurrency:
        found = _evaluate_group(raw, contexts)
        if found is not None and all(found[0] != group for group, _ in groups):
            groups.append(found)
    if not groups:
        return True
    (first, cancel_first), second = groups[0], groups[1] if len(groups) > 1 else None
    call.concurrency_group = first
    if _called_group(call) is None:  # the first group is not held yet
        if not _acquire_group(session, settings, run, call, first, cancel_first):
            return False
        if second is None:
            return True
        call.outputs = {**(call.outputs or {}), reusable.CALLED_GROUP: second[0]}
        session.flush()
    assert second is not None
    return _acquire_group(session, settings, run, call, *second)


def _evaluate_group(raw: Any, contexts: dict[str, Any]) -> tuple[str, bool] | None:
    """A `concurrency:` value's group and `cancel-in-progress`; None without a group."""
    from opencodehub.actions.expressions import interpolate

    if raw is None:
        return None
    if isinstance(raw, dict):
        group_expr, cancel = raw.get("group") or "", raw.get("cancel-in-progress", False)
    else:
        group_expr, cancel = raw, False
    group = str(interpolate(str(group_expr), contexts))[:255]
    if isinstance(cancel, str):
        cancel = bool(_evaluate(cancel, contexts))
    return (group, bool(cancel)) if group else None


def _in_group(group: str) -> Any:
    """A filter for the rows that may take part in a job-level group: by their own (or first)
    group, or as a call row's second group. The second group is not queried in SQL (a JSON
    path on PostgreSQL fails on the frame's NUL key): a row with one is a waiting call row with
    a first group, and `_groups_of` sorts those candidates out."""
    return or_(
        WorkflowJob.concurrency_group == group,
        (WorkflowJob.status == JobStatus.WAITING) & WorkflowJob.concurrency_group.is_not(None),
    )


def _acquire_group(
    session: Session,
    settings: Settings,
    run: WorkflowRun,
    job: WorkflowJob,
    group: str,
    cancel: bool,
) -> bool:
    """Whether `job` may take `group` now (see _job_concurrency_allows). Cancels what the
    rules say to cancel, `job` itself when a newer job waits for the group."""
    others = session.scalars(
        select(WorkflowJob)
        .where(
            WorkflowJob.repository_id == job.repository_id,
            _in_group(group),
            WorkflowJob.status != JobStatus.COMPLETED,
            WorkflowJob.id != job.id,
        )
        .order_by(WorkflowJob.id)
    ).all()
    active = False
    touched: list[WorkflowRun] = []
    for other in others:
        if group not in _groups_of(other):
            continue
        pending = not _holds(other, group)
        if pending and other.id > job.id:
            # A newer job of the group already waits: this older one is superseded.
            _cancel_job(session, settings, run, job)
            return False
        if pending or cancel:
            _cancel_job(session, settings, other.run, other)
            if other.run_id != run.id:
                touched.append(other.run)
        if other.status != JobStatus.COMPLETED:
            active = True
    session.flush()
    for other_run in touched:
        advance(session, settings, other_run)
    return not active


def _start_next_in_job_group(
    session: Session,
    settings: Settings,
    job: WorkflowJob,
    groups: Sequence[str] | None = None,
) -> None:
    """A job of a concurrency group ended (or a call row that held `groups`): the runs of the
    jobs waiting for those groups move, the oldest waiting job's first (a call row waiting for
    the called workflow's group takes it before a newer call arriving at it)."""
    if groups is None:
        groups = [job.concurrency_group] if job.concurrency_group else []
    if not groups:
        return
    waiting = session.scalars(
        select(WorkflowJob)
        .where(
            WorkflowJob.repository_id == job.repository_id,
            or_(*(_in_group(group) for group in groups)),
            WorkflowJob.status == JobStatus.WAITING,
            WorkflowJob.started_at.is_(None),
        )
        .order_by(WorkflowJob.id)
    ).all()
    woken: set[int] = set()
    for row in waiting:
        if row.run_id in woken or row.status != JobStatus.WAITING:
            continue  # ended or moved while an earlier run moved
        taking_part = [group for group in groups if group in _groups_of(row)]
        if not taking_part or all(_holds(row, group) for group in taking_part):
            continue  # it holds what was freed and waits for something else
        woken.add(row.run_id)
        advance(session, settings, row.run)


def _groups_of(job: WorkflowJob) -> list[str]:
    return [group for group in (job.concurrency_group, _called_group(job)) if group]


def _finish_job(job: WorkflowJob, conclusion: Conclusion, *, error: str | None = None) -> None:
    now = utcnow()
    job.status = JobStatus.COMPLETED
    job.conclusion = conclusion
    job.completed_at = now
    if error:
        job.error = error
    _require_no_call_frame(job)
    tokens.revoke_job_token(job)


def _settle_run(
    session: Session, settings: Settings, run: WorkflowRun, jobs: Sequence[WorkflowJob]
) -> None:
    if run.status == RunStatus.COMPLETED:
        return
    _settle_calls(session, settings, run, jobs)
    if any(job.status == JobStatus.IN_PROGRESS for job in jobs) and run.status == RunStatus.QUEUED:
        run.status = RunStatus.IN_PROGRESS
        run.run_started_at = run.run_started_at or utcnow()
    if jobs and all(job.status == JobStatus.COMPLETED for job in jobs):
        conclusions = [job.conclusion for job in jobs]
        if run.cancel_requested or Conclusion.CANCELLED in conclusions:
            run.conclusion = (
                Conclusion.FAILURE if Conclusion.FAILURE in conclusions else Conclusion.CANCELLED
            )
        elif Conclusion.FAILURE in conclusions:
            run.conclusion = Conclusion.FAILURE
        else:
            run.conclusion = Conclusion.SUCCESS
        if run.cancel_requested:
            run.conclusion = Conclusion.CANCELLED
        run.status = RunStatus.COMPLETED
        run.completed_at = utcnow()
        session.flush()
        _start_next_in_group(session, settings, run)
    session.flush()


# Commit statuses --------------------------------------------------------------------------------

_STATUS_STATES = {
    Conclusion.SUCCESS: ("success", "Successful"),
    Conclusion.FAILURE: ("failure", "Failing"),
    Conclusion.CANCELLED: ("error", "Cancelled"),
    Conclusion.SKIPPED: ("success", "Skipped"),
}


def _status_sha(run: WorkflowRun) -> str:
    """The commit a job's status belongs to: the pull request's head for a `pull_request`
    run (it runs on the test merge, but reviews and branch protection look at the head)."""
    if run.event == "pull_request":
        head = ((run.event_payload or {}).get("pull_request") or {}).get("head") or {}
        if isinstance(head.get("sha"), str) and head["sha"]:
            return str(head["sha"])
    return run.head_sha


# The commit statuses a transaction reported, written together just before it commits.
_STATUSES = "opencodehub.actions.statuses"


def _report_status(
    session: Session, settings: Settings, run: WorkflowRun, job: WorkflowJob
) -> None:
    """The job's state as a commit status `{workflow} / {job}` (when statuses exist). The
    statuses of a transaction are written together, in order, just before it commits (a new
    run's queued jobs in one insert): see _write_statuses."""
    try:
        statuses = importlib.import_module("opencodehub.repos.statuses")
    except ModuleNotFoundError:
        return
    new_status = getattr(statuses, "NewStatus", None)
    if new_status is None or reusable.is_call(run.workflow_data or {}, job.job_key):
        return
    if job.status == JobStatus.COMPLETED and job.conclusion is not None:
        state, description = _STATUS_STATES[job.conclusion]
    elif job.status == JobStatus.IN_PROGRESS:
        state, description = "pending", "In progress"
    else:
        state, description = "pending", "Queued"
    url = (
        f"{settings.effective_base_url}/{run.repository.full_name}/actions/runs/{run.id}"
        f"/jobs/{job.id}"
    )
    status = new_status(
        repository_id=run.repository_id,
        sha=_status_sha(run),
        state=state,
        context=f"{run.name} / {job.name}"[:255],
        description=description,
        target_url=url,
        creator_id=run.actor_id,
    )
    transaction.batch_before_commit(session, _STATUSES, (status, run.id, job.id), _write_statuses)


def _write_statuses(session: Session, pending: list[tuple[Any, int, int]]) -> None:
    """Just before the transaction commits: its commit statuses, in the order they were
    reported, in a savepoint of their own, so that a status that cannot be written never fails
    what the transaction did."""
    statuses = importlib.import_module("opencodehub.repos.statuses")
    try:
        with session.begin_nested():
            results = statuses.set_statuses(session, [status for status, _run, _job in pending])
    except Exception:
        log.exception("commit statuses could not be set", count=len(pending))
        return
    for (_status, run_id, job_id), error in zip(pending, results, strict=True):
        if error is not None:
            log.error("commit status could not be set", run_id=run_id, job_id=job_id, error=error)


# Dispatch ---------------------------------------------------------------------------------------


def claim_job(session: Session, job_id: int, runner: Runner) -> WorkflowJob | None:
    """Take a queued job for `runner`: a compare-and-set on the status, so a job id delivered
    twice is taken once."""
    job = session.get(WorkflowJob, job_id)
    if job is None or job.status != JobStatus.QUEUED:
        return None
    if not runner_accepts(runner.labels, job.runs_on):
        return None
    taken = _take(session, job_id, runner)
    if taken is None:
        session.expire(job)
    return taken


def _take(session: Session, job_id: int, runner: Runner) -> WorkflowJob | None:
    """The compare-and-set of a claim, then the job as it wrote it; None if it was not queued."""
    taken = session.execute(
        _TAKE,
        {"b_id": job_id, "b_runner_id": runner.id, "b_runner_name": runner.name, "b_now": utcnow()},
    )
    if taken.rowcount != 1:
        return None
    job = session.get(WorkflowJob, job_id, populate_existing=True)
    runner.busy = True
    return job


def claim_from_database(session: Session, runner: Runner, limit: int = 50) -> WorkflowJob | None:
    """The oldest queued job this runner can take, found without the queue (its fallback).
    The runner's scope (see _runner_may_run) is part of the search."""
    if runner.repository_id is not None:
        scope, params = "repository", {"scope": runner.repository_id}
    elif runner.owner_id is not None:
        scope, params = "owner", {"scope": runner.owner_id}
    else:
        scope, params = "instance", {}
    query = _CANDIDATES.get((scope, limit))
    if query is None:
        query = select(_JOBS.c.id, _JOBS.c.runs_on).where(_JOBS.c.status == JobStatus.QUEUED)
        if scope == "repository":
            query = query.where(_JOBS.c.repository_id == bindparam("scope"))
        elif scope == "owner":
            owned = select(Repository.__table__.c.id).where(
                Repository.__table__.c.owner_id == bindparam("scope")
            )
            query = query.where(_JOBS.c.repository_id.in_(owned))
        query = query.order_by(_JOBS.c.queued_at, _JOBS.c.id).limit(limit)
        _CANDIDATES[(scope, limit)] = query
    candidates = session.execute(query, params).all()
    for job_id, labels in candidates:
        if runner_accepts(runner.labels, labels):
            # Queued when read: the compare-and-set settles whether it still is.
            job = _take(session, job_id, runner)
            if job is not None:
                return job
    return None


def _runner_may_run(session: Session, runner: Runner, job_id: int) -> bool:
    """Repository runners take their repository's jobs, organization runners their
    organization's, instance runners everyone's."""
    if runner.repository_id is None and runner.owner_id is None:
        return True
    row = session.execute(
        select(Repository.id, Repository.owner_id)
        .join(WorkflowJob, WorkflowJob.repository_id == Repository.id)
        .where(WorkflowJob.id == job_id)
    ).first()
    if row is None:
        return False
    if runner.repository_id is not None:
        return row[0] == runner.repository_id
    return row[1] == runner.owner_id


def claim_for_runner(session: Session, job_id: int, runner: Runner) -> WorkflowJob | None:
    # Most ids a poll pops are stale (the job was taken through the database already): one
    # read settles those before the scope check.
    job = session.get(WorkflowJob, job_id)
    if job is None or job.status != JobStatus.QUEUED:
        return None
    if not _runner_may_run(session, runner, job_id):
        return None
    return claim_job(session, job_id, runner)


def start_job(session: Session, settings: Settings, job: WorkflowJob) -> JobSpec:
    """After a claim: issue the job token, mark the run started, build the JobSpec."""
    token = tokens.issue_job_token(job)
    run = job.run
    if run.status == RunStatus.QUEUED:
        run.status = RunStatus.IN_PROGRESS
        run.run_started_at = run.run_started_at or utcnow()
    session.flush()
    _report_status(session, settings, run, job)
    return build_spec(session, settings, job, token)


def build_spec(session: Session, settings: Settings, job: WorkflowJob, token: str) -> JobSpec:
    run = job.run
    # Only what the spec uses: the job's place among its matrix siblings and the rows of the
    # jobs in `needs` (loading every job of a 200-job matrix on each claim was most of the
    # claim's time; their ids, a fifth of what was left).
    index, total = session.execute(
        _PLACE_AMONG_SIBLINGS, {"job_id": job.id, "run_id": run.id, "job_key": job.job_key}
    ).one()
    needed = (
        session.scalars(
            select(WorkflowJob).where(
                WorkflowJob.run_id == run.id, WorkflowJob.job_key.in_(list(job.needs))
            )
        ).all()
        if job.needs
        else []
    )
    definition = dict(_definition(run, job.job_key))
    secrets = _job_secrets(session, settings, run, job.job_key)
    secrets["GITHUB_TOKEN"] = token
    defining = reusable.workflow_mapping(run.workflow_data or {}, job.job_key)
    strategy_raw = definition.get("strategy") or {}
    github = github_context(settings, run)
    github["job"] = reusable.short_key(job.job_key)
    github["token"] = token
    return JobSpec(
        job_id=job.id,
        run_id=run.id,
        run_number=run.run_number,
        run_attempt=run.run_attempt,
        workflow_name=run.name,
        workflow_path=run.workflow_path,
        job_key=job.job_key,
        job_name=job.name,
        job=definition,
        workflow_env=dict(defining.get("env") or {}),
        workflow_defaults=dict(defining.get("defaults") or {}),
        contexts=JobContexts(
            github=github,
            vars=_variables(session, run.repository_id),
            secrets=secrets,
            matrix=dict(job.matrix or {}),
            strategy={
                "fail-fast": bool(strategy_raw.get("fail-fast", True))
                if isinstance(strategy_raw, dict)
                else True,
                "job-index": index,
                "job-total": total,
                "max-parallel": (
                    min(int(strategy_raw["max-parallel"]), total)
                    if isinstance(strategy_raw, dict)
                    and isinstance(strategy_raw.get("max-parallel"), int)
                    else total
                ),
            },
            needs=needs_context(needed, job.needs),
            inputs=_job_inputs(session, run, job.job_key),
        ),
        server_url=settings.effective_base_url,
        api_url=f"{settings.effective_base_url}/api/v3",
        token=token,
        repository=run.repository.full_name,
        sha=run.head_sha,
        ref=run.head_ref,
        event_name=run.event,
        event_payload=dict(run.event_payload or {}),
        actor=run.actor.username if run.actor else "",
        runner_name=job.runner_name,
    )


def held_job(session: Session, runner: Runner, job_id: int) -> WorkflowJob:
    """A job the runner holds (in progress, leased to it); NotFound otherwise."""
    job = session.get(WorkflowJob, job_id) if 0 < job_id < 2**63 else None
    if job is None or job.runner_id != runner.id or job.status != JobStatus.IN_PROGRESS:
        raise NotFound("The runner does not hold this job.")
    job.heartbeat_at = utcnow()
    return job


def heartbeat(session: Session, runner: Runner, job_ids: Sequence[int]) -> tuple[list, list]:
    """Refresh the runner's leases; (jobs to cancel, jobs it no longer holds)."""
    now = utcnow()
    runner.last_heartbeat_at = now
    cancel: list[int] = []
    unknown: list[int] = []
    ids = [job_id for job_id in job_ids if 0 < job_id < 2**63]
    jobs = (
        {job.id: job for job in session.scalars(select(WorkflowJob).where(WorkflowJob.id.in_(ids)))}
        if ids
        else {}
    )
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None or job.runner_id != runner.id or job.status != JobStatus.IN_PROGRESS:
            unknown.append(job_id)
            continue
        job.heartbeat_at = now
        if job.cancel_requested:
            cancel.append(job_id)
    runner.busy = bool(set(job_ids) - set(unknown))
    return cancel, unknown


def update_step(
    session: Session,
    job: WorkflowJob,
    index: int,
    name: str,
    status: str,
    conclusion: str | None,
) -> None:
    """Record a step's start or end: a start inserts the step's row (or updates it: a start
    sent again after a lost answer, maybe after the step's end); an end updates it (or inserts
    it, when its start never came). Statements on the table without loading the row: one in
    the usual case."""
    session.flush()  # what the request changed first (the job's lease), as a query would
    now = utcnow()
    completed = status == "completed"
    step_conclusion = (
        (Conclusion(conclusion) if conclusion else Conclusion.SUCCESS) if completed else None
    )
    if completed and _update_step(session, job.id, index, name, step_conclusion, now):
        return
    if _insert_step(session, job.id, index, name, step_conclusion, now):
        return
    _update_step(session, job.id, index, name, step_conclusion, now)  # inserted meanwhile


def _update_step(
    session: Session,
    job_id: int,
    index: int,
    name: str,
    conclusion: Conclusion | None,
    now: datetime,
) -> bool:
    """Update the step's row, to its end when `conclusion` is given; False without a row."""
    params: dict[str, Any] = {"b_job_id": job_id, "b_number": index, "b_name": name[:512]}
    if conclusion is not None:
        statement = _STEP_END[bool(name[:512])]
        params.update(b_conclusion=conclusion, b_now=now)
    else:
        statement = _STEP_START[bool(name[:512])]
    return bool(session.execute(statement, params).rowcount)


def _insert_step(
    session: Session,
    job_id: int,
    index: int,
    name: str,
    conclusion: Conclusion | None,
    now: datetime,
) -> bool:
    """Insert the step's row, started (and ended when `conclusion` is given); False when the
    row is there already."""
    row = {
        "job_id": job_id,
        "number": index,
        "name": name[:512],
        "status": JobStatus.IN_PROGRESS if conclusion is None else JobStatus.COMPLETED,
        "conclusion": conclusion,
        "started_at": now,
        "completed_at": None if conclusion is None else now,
    }
    dialect = session.get_bind().dialect.name
    statement = _INSERT_STEP.get(dialect)
    if statement is None:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(_STEPS).on_conflict_do_nothing()
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            statement = postgresql_insert(_STEPS).on_conflict_do_nothing()
        else:
            statement = _STEPS.insert()
        _INSERT_STEP[dialect] = statement
    if dialect in ("sqlite", "postgresql"):
        return bool(session.execute(statement, row).rowcount)
    try:
        with session.begin_nested():
            session.execute(statement, row)
        return True
    except IntegrityError:
        return False


def add_annotation(
    session: Session, job: WorkflowJob, level: str, message: str, path: str, line: int | None
) -> None:
    count = session.scalar(select(func.count()).where(Annotation.job_id == job.id)) or 0
    if count >= 100:  # GitHub keeps ten per step; a hundred per job bounds a noisy one
        return
    session.add(
        Annotation(job_id=job.id, level=level, message=message, path=path[:1024], line=line)
    )
    session.flush()


def read_committed(session: Session) -> None:
    """Called first in a unit of work that ends jobs: MariaDB's REPEATABLE READ would keep
    showing, after `lock_run` waited for another ending, the snapshot taken before it (the
    other job still running). PostgreSQL reads committed rows already; SQLite has one writer."""
    if session.get_bind().dialect.name == "mysql":
        session.connection(execution_options={"isolation_level": "READ COMMITTED"})


def lock_run(session: Session, run_id: int) -> None:
    """Jobs of one run end one at a time. Two jobs ending at once in separate transactions
    would each see the other still running, and neither would complete the run (it stayed
    `in_progress` for good). The run's row is locked before the ending job's own row is
    written, so two endings cannot deadlock, and it is read afresh.

    On PostgreSQL the lock is `FOR NO KEY UPDATE`: it excludes other endings but not the
    foreign-key check PostgreSQL runs when a transaction writes a job row a second time (a
    runner's log batch after its lease refresh, a claim and its token), which takes a key-share
    lock on the run. With `FOR UPDATE`, such a writer holding the job's row waited for the run
    while the reaper, holding the run, waited for the job: a deadlock."""
    with session.no_autoflush:
        session.scalar(_LOCK_RUN, {"run_id": run_id})


def _still_running(session: Session, job: WorkflowJob) -> bool:
    """Under the run's lock: whether the job is still running on the same runner (a completion
    sent twice at once, or the reaper and the runner's completion, end it once)."""
    # The query's autoflush writes the lease refresh first: on SQLite that write is what makes
    # a second ending wait for the first to commit.
    row = session.execute(_STILL_RUNNING, {"job_id": job.id}).one_or_none()
    return row is not None and row[0] == JobStatus.IN_PROGRESS and row[1] == job.runner_id


def complete_job(
    session: Session,
    settings: Settings,
    job: WorkflowJob,
    result: JobResult,
    tail: LogBatch | None = None,
) -> WorkflowJob:
    """The runner's result (and its last log lines): outputs, step states, the job's
    conclusion; then the graph moves."""
    lock_run(session, job.run_id)
    if not _still_running(session, job):
        raise NotFound("The runner does not hold this job.")
    for step in result.steps:
        update_step(session, job, step.index, step.name, "completed", step.conclusion)
    job.outputs = {str(k)[:255]: str(v)[: 1024 * 1024] for k, v in result.outputs.items()}
    conclusion = Conclusion(result.result)
    if job.cancel_requested and conclusion != Conclusion.SUCCESS:
        conclusion = Conclusion.CANCELLED
    _finish_job(job, conclusion)
    _after_job(session, settings, job, tail)
    return job


def _after_job(
    session: Session, settings: Settings, job: WorkflowJob, tail: LogBatch | None = None
) -> None:
    """A job ended: its log (with `tail`, the last lines its completion carried) moves to
    storage, its status is reported, the run moves."""
    with session.no_autoflush:  # the job's row is written once, below
        run = job.run
    try:
        with session.no_autoflush:
            if tail is None:
                logs.archive(session, settings, job)
            else:
                logs.archive(session, settings, job, tail.start, tail.lines)
    except Exception:
        log.exception("job log could not be archived; it stays in the database", job_id=job.id)
        if tail is not None:
            logs.append(session, job, tail.start, tail.lines)
    session.flush()  # the job's end (and where its log went): one write of its row
    _report_status(session, settings, run, job)
    notify_logs_after_commit(session, settings, job.id)
    if job.conclusion == Conclusion.FAILURE:
        _fail_fast(session, settings, run, job)
    _release_runner(session, job)
    if _run_may_move(session, run):
        advance(session, settings, run)
    _start_next_in_job_group(session, settings, job)


def _run_may_move(session: Session, run: WorkflowRun) -> bool:
    """Whether `advance` has anything to do after one of the run's jobs ended: a job waits
    (on needs, max-parallel or a group), the run must be settled (its last job ended), or it
    is not marked started yet. Otherwise it would re-read every job of the run for nothing,
    which dominated completing a job of a large matrix."""
    # Under the run's lock (`lock_run`). MariaDB reads at REPEATABLE READ from a snapshot
    # taken before the lock: only a locking read there sees the job another ending committed.
    locking = session.get_bind().dialect.name == "mysql"
    may_move = run.status != RunStatus.IN_PROGRESS
    if not may_move:
        # The distinct states of the jobs not completed (at most three rows, not one per job).
        query = _UNFINISHED_STATES.with_for_update(read=True) if locking else _UNFINISHED_STATES
        statuses = list(session.scalars(query, {"run_id": run.id}))
        may_move = JobStatus.WAITING in statuses or not statuses
    if may_move:
        # `advance` reads every job of the run: give it their committed states.
        jobs = select(WorkflowJob).where(WorkflowJob.run_id == run.id)
        session.scalars(
            (jobs.with_for_update(read=True) if locking else jobs).execution_options(
                populate_existing=True
            )
        ).all()
    return may_move


def _release_runner(session: Session, job: WorkflowJob) -> None:
    if job.runner_id is None:
        return
    runner = session.get(Runner, job.runner_id)
    if runner is None:
        return
    others = session.scalar(_RUNNING_ON, {"runner_id": runner.id})
    runner.busy = bool(others)


def _fail_fast(session: Session, settings: Settings, run: WorkflowRun, failed: WorkflowJob) -> None:
    definition = _definition(run, failed.job_key)
    strategy = definition.get("strategy") or {}
    if not isinstance(strategy, dict) or not strategy.get("matrix"):
        return
    if strategy.get("fail-fast", True) is False:
        return
    siblings = session.scalars(
        select(WorkflowJob).where(
            WorkflowJob.run_id == run.id,
            WorkflowJob.job_key == failed.job_key,
            WorkflowJob.id != failed.id,
            WorkflowJob.status != JobStatus.COMPLETED,
        )
    ).all()
    for sibling in siblings:
        _cancel_job(session, settings, run, sibling)


def _cancel_job(session: Session, settings: Settings, run: WorkflowRun, job: WorkflowJob) -> None:
    if job.status == JobStatus.IN_PROGRESS:
        job.cancel_requested = True
    elif job.status == JobStatus.WAITING and job.started_at is not None:
        # A call row whose called jobs were added ends once they have (see _settle_calls):
        # until then it holds its concurrency group and its matrix's max-parallel slot.
        job.cancel_requested = True
        jobs = session.scalars(select(WorkflowJob).where(WorkflowJob.run_id == job.run_id)).all()
        prefix = _inner_prefix(job, jobs)
        for inner in jobs:
            if inner.job_key.startswith(prefix) and inner.status != JobStatus.COMPLETED:
                _cancel_job(session, settings, run, inner)
    elif job.status in (JobStatus.QUEUED, JobStatus.WAITING):
        # A queued job holds its group; so does a call row waiting for its second group.
        groups = _held_groups(job)
        _finish_job(job, Conclusion.CANCELLED)
        _report_status(session, settings, run, job)
        if groups:
            session.flush()
            _start_next_in_job_group(session, settings, job, groups)


def unclaim_job(session: Session, settings: Settings, runner: Runner, job_id: int) -> bool:
    """Undo a claim whose long poll lost its runner before the answer went out (the runner
    stopped or its connection dropped): the job is queued again at once, as if never taken,
    instead of waiting for the reaper. False when the job moved on meanwhile."""
    job = session.get(WorkflowJob, job_id)
    if job is None or job.runner_id != runner.id or job.status != JobStatus.IN_PROGRESS:
        return False
    if session.scalar(select(func.count()).where(JobStep.job_id == job.id)):
        return False
    job.status = JobStatus.QUEUED
    job.lease_count = max(0, job.lease_count - 1)
    job.started_at = None
    job.heartbeat_at = None
    job.enqueued_at = utcnow()
    tokens.revoke_job_token(job)
    session.flush()
    _release_runner(session, job)
    job.runner_id = None
    job.runner_name = ""
    session.flush()
    _enqueue_after_commit(session, settings, job)
    return True


def release_job(session: Session, settings: Settings, job: WorkflowJob, reason: str) -> bool:
    """A job a runner gives back (shutting down) or lost (reaper): queued again once when no
    step started, else failed with `reason`. True when queued again."""
    lock_run(session, job.run_id)
    if not _still_running(session, job):
        return False
    started = session.scalar(select(func.count()).where(JobStep.job_id == job.id))
    if not started and job.requeues < MAX_REQUEUES and not job.cancel_requested:
        now = utcnow()
        job.status = JobStatus.QUEUED
        job.requeues += 1
        job.runner_id = None
        job.runner_name = ""
        job.started_at = None
        job.heartbeat_at = None
        job.queued_at = now
        job.enqueued_at = now
        tokens.revoke_job_token(job)
        session.flush()
        _enqueue_after_commit(session, settings, job)
        return True
    conclusion = Conclusion.CANCELLED if job.cancel_requested else Conclusion.FAILURE
    _finish_job(job, conclusion, error=reason)
    for step in session.scalars(
        select(JobStep).where(JobStep.job_id == job.id, JobStep.status != JobStatus.COMPLETED)
    ):
        step.status = JobStatus.COMPLETED
        step.conclusion = conclusion
        step.completed_at = utcnow()
    session.flush()
    _after_job(session, settings, job)
    return False


# Cancelling and re-running ----------------------------------------------------------------------


def cancel_run(session: Session, settings: Settings, run: WorkflowRun) -> None:
    """Stop a run: waiting and queued jobs end as cancelled at once, running ones are told
    through their runner's next heartbeat."""
    if run.status == RunStatus.COMPLETED:
        raise Conflict("Cannot cancel a workflow run that is completed.")
    run.cancel_requested = True
    jobs = session.scalars(select(WorkflowJob).where(WorkflowJob.run_id == run.id)).all()
    for job in jobs:
        _cancel_job(session, settings, run, job)
    if run.status == RunStatus.PENDING:
        run.status = RunStatus.QUEUED
    session.flush()
    _settle_run(session, settings, run, jobs)


def rerun(session: Session, settings: Settings, actor: Actor, run: WorkflowRun) -> WorkflowRun:
    """Run every job of a completed run again (GitHub's re-run: the same run, attempt + 1)."""
    if run.status != RunStatus.COMPLETED:
        raise Conflict("This workflow run is not completed.")
    if run.error:
        raise Conflict("This workflow run cannot be re-run: its workflow file is invalid.")
    jobs = session.scalars(select(WorkflowJob).where(WorkflowJob.run_id == run.id)).all()
    for job in jobs:
        session.delete(job)
    session.flush()
    run.run_attempt += 1
    run.status = RunStatus.QUEUED
    run.conclusion = None
    run.cancel_requested = False
    run.completed_at = None
    run.run_started_at = None
    run.triggering_actor_id = actor.user_id
    contexts = _base_contexts(session, settings, run)
    return _start_jobs(session, settings, run, _rebuild(run), contexts)


def _rebuild(run: WorkflowRun) -> Any:
    """The run's workflow from the stored mapping (it was valid when the run was made)."""
    import yaml

    from opencodehub.actions.workflow import parse_workflow

    text = yaml.safe_dump(reusable.without_calls(run.workflow_data), sort_keys=False)
    return parse_workflow(run.workflow_path, text)


# The reaper and the sweep -----------------------------------------------------------------------


def reap(session: Session, settings: Settings, *, lease_seconds: float = LEASE_SECONDS) -> int:
    """End jobs whose runner stopped heartbeating: queued again once when no step started,
    else failed with "runner lost". Returns how many were reaped."""
    read_committed(session)  # it ends jobs, as a completion does: see lock_run
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    stale = session.scalars(
        select(WorkflowJob)
        .where(
            WorkflowJob.status == JobStatus.IN_PROGRESS,
            or_(WorkflowJob.heartbeat_at.is_(None), WorkflowJob.heartbeat_at < cutoff),
        )
        .limit(200)
    ).all()
    for job in stale:
        release_job(session, settings, job, "The runner lost contact with the server.")
    return len(stale)


def reenqueue(
    session: Session, settings: Settings, *, older_than: timedelta = REENQUEUE_AFTER
) -> int:
    """Push again the queued jobs nobody took for a while (a restarted Redis lost its lists;
    a duplicate id is harmless: the claim is a compare-and-set)."""
    cutoff = utcnow() - older_than
    jobs = session.scalars(
        select(WorkflowJob)
        .where(
            WorkflowJob.status == JobStatus.QUEUED,
            or_(WorkflowJob.enqueued_at.is_(None), WorkflowJob.enqueued_at < cutoff),
        )
        .order_by(WorkflowJob.id)
        .limit(1000)
    ).all()
    now = utcnow()
    for job in jobs:
        job.enqueued_at = now
        _enqueue_after_commit(session, settings, job)
    return len(jobs)


# Lookups for the API and the web UI -------------------------------------------------------------


def get_run(session: Session, repository: Repository, run_id: int) -> WorkflowRun:
    run = session.get(WorkflowRun, run_id) if 0 < run_id < 2**63 else None
    if run is None or run.repository_id != repository.id:
        raise NotFound()
    return run


def get_job(session: Session, repository: Repository, job_id: int) -> WorkflowJob:
    job = session.get(WorkflowJob, job_id) if 0 < job_id < 2**63 else None
    if job is None or job.repository_id != repository.id:
        raise NotFound()
    return job


def list_runs(
    session: Session,
    repository: Repository,
    *,
    workflow_id: int | None = None,
    event: str | None = None,
    status: str | None = None,
    branch: str | None = None,
    head_sha: str | None = None,
    offset: int = 0,
    limit: int = 30,
) -> tuple[list[WorkflowRun], int]:
    conditions = [WorkflowRun.repository_id == repository.id]
    if workflow_id is not None:
        conditions.append(WorkflowRun.workflow_id == workflow_id)
    if event:
        conditions.append(WorkflowRun.event == event)
    if branch:
        conditions.append(WorkflowRun.head_branch == branch)
    if head_sha:
        conditions.append(WorkflowRun.head_sha == head_sha)
    if status:
        if status in {c.value for c in Conclusion}:
            conditions.append(WorkflowRun.conclusion == Conclusion(status))
        elif status in {s.value for s in RunStatus}:
            conditions.append(WorkflowRun.status == RunStatus(status))
        else:
            raise ValidationFailed.invalid("WorkflowRun", "status", f"unknown status {status!r}")
    total = session.scalar(select(func.count()).select_from(WorkflowRun).where(*conditions)) or 0
    runs = session.scalars(
        select(WorkflowRun)
        .where(*conditions)
        .order_by(WorkflowRun.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return list(runs), total


def run_jobs(session: Session, run: WorkflowRun) -> list[WorkflowJob]:
    """The run's jobs as GitHub lists them: a job calling a reusable workflow shows as the
    called workflow's jobs (`caller / called`), not as a job of its own."""
    data = run.workflow_data or {}
    return [
        job
        for job in session.scalars(
            select(WorkflowJob).where(WorkflowJob.run_id == run.id).order_by(WorkflowJob.id)
        )
        if not reusable.is_call(data, job.job_key)
    ]


def job_steps(session: Session, job: WorkflowJob) -> list[JobStep]:
    return list(
        session.scalars(select(JobStep).where(JobStep.job_id == job.id).order_by(JobStep.number))
    )


def run_annotations(session: Session, run: WorkflowRun) -> list[tuple[WorkflowJob, Annotation]]:
    rows = session.execute(
        select(WorkflowJob, Annotation)
        .join(Annotation, Annotation.job_id == WorkflowJob.id)
        .where(WorkflowJob.run_id == run.id)
        .order_by(Annotation.id)
    ).all()
    return [(job, annotation) for job, annotation in rows]


def list_workflows(session: Session, repository: Repository) -> list[Workflow]:
    return list(
        session.scalars(
            select(Workflow).where(Workflow.repository_id == repository.id).order_by(Workflow.id)
        )
    )


def find_workflow(session: Session, repository: Repository, id_or_name: str) -> Workflow:
    conditions = [Workflow.repository_id == repository.id]
    if id_or_name.isdigit() and len(id_or_name) < 19:
        conditions.append(Workflow.id == int(id_or_name))
    else:
        conditions.append(
            or_(
                Workflow.path == f"{WORKFLOW_DIR}/{id_or_name}",
                Workflow.path == id_or_name,
            )
        )
    found = session.scalar(select(Workflow).where(*conditions))
    if found is None:
        raise NotFound()
    return found


# workflow_dispatch ------------------------------------------------------------------------------


def dispatch(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    workflow_file: str,
    ref: str,
    inputs: dict[str, Any],
) -> WorkflowRun:
    """Run a workflow with `on: workflow_dispatch` at a branch or tag, with typed inputs."""
    authorize(session, actor, repository, Permission.WRITE)
    git = store.open_repository(settings, repository.id)
    full_ref = ref if ref.startswith("refs/") else None
    for candidate in [full_ref] if full_ref else [f"refs/heads/{ref}", f"refs/tags/{ref}"]:
        try:
            reference = git.references.get(candidate)
        except (ValueError, pygit2.InvalidSpecError):
            reference = None
        if reference is not None:
            full_ref = candidate
            sha = str(reference.peel(pygit2.Commit).id)
            break
    else:
        raise ValidationFailed.invalid("Workflow", "ref", f"No ref found for: {ref}")
    files = [
        file
        for file in read_workflow_files(settings, repository.id, sha)
        if file.path == workflow_file
    ]
    if not files:
        raise NotFound("The workflow file does not exist at this ref.")
    workflow, error = parse(files[0])
    if workflow is None:
        raise ValidationFailed.invalid("Workflow", "workflow", error or "invalid workflow")
    if workflow.dispatch_inputs is None:
        raise ValidationFailed.invalid(
            "Workflow",
            "workflow",
            "Workflow does not have 'workflow_dispatch' trigger",
        )
    unknown = sorted(set(inputs) - set(workflow.dispatch_inputs))
    if unknown:
        raise ValidationFailed(
            [FieldError("Workflow", "inputs", "invalid", f"Unexpected inputs provided: {unknown}")]
        )
    if len(inputs) > 25:
        raise ValidationFailed.invalid("Workflow", "inputs", "at most 25 inputs")
    coerced: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, spec in workflow.dispatch_inputs.items():
        try:
            coerced[name] = spec.coerce(inputs.get(name))
        except ValueError as exc:
            errors.append(FieldError("Workflow", f"inputs.{name}", "invalid", str(exc)))
    if errors:
        raise ValidationFailed(errors)
    repo_row = repository
    trigger = Trigger(
        event="workflow_dispatch",
        trigger_key=f"dispatch:{crypto.random_token(16)}",
        head_sha=sha,
        head_ref=full_ref or ref,
        actor_id=actor.user_id,
        payload={
            "inputs": coerced,
            "ref": full_ref,
            "repository": {"full_name": repo_row.full_name, "id": repo_row.id},
            "sender": {"login": actor.user.username} if actor.user else {},
            "workflow": workflow_file,
        },
        inputs=coerced,
        display_title=workflow.name,
    )
    run = create_run(session, settings, repository, workflow, trigger)
    assert run is not None
    return run


# Event consumers --------------------------------------------------------------------------------


def _push_record_id(session: Session, repository_id: int, ref: str, sha: str) -> int | None:
    from opencodehub.repos.models import PushRecord

    return session.scalar(
        select(func.max(PushRecord.id)).where(
            PushRecord.repository_id == repository_id,
            PushRecord.ref == ref,
            PushRecord.new_sha == sha,
        )
    )


def handle_push(session: Session, settings: Settings, payload: dict[str, Any]) -> list[WorkflowRun]:
    """The `push` event (repos/pushes.py): runs for each pushed branch or tag."""
    if not settings.actions_enabled:
        return []
    repository = session.get(Repository, int(payload["repository_id"]))
    if repository is None or repository.is_archived:
        return []
    created: list[WorkflowRun] = []
    pusher_id = payload.get("pusher_id")
    for update_ in payload.get("updates", []):
        if update_.get("deleted"):
            continue
        ref, after, before = update_["ref"], update_["after"], update_["before"]
        if not ref.startswith(("refs/heads/", "refs/tags/")):
            continue
        record_id = _push_record_id(session, repository.id, ref, after)
        key = f"push:{record_id}" if record_id else f"push:{ref}:{payload.get('pushed_at')}"
        head_summary = _commit_summary(settings, repository.id, after)
        trigger = Trigger(
            event="push",
            trigger_key=key[:128],
            head_sha=after,
            head_ref=ref,
            actor_id=pusher_id,
            payload={
                "ref": ref,
                "before": before,
                "after": after,
                "created": bool(update_.get("created")),
                "deleted": False,
                "forced": bool(update_.get("forced")),
                "repository": {"id": repository.id, "full_name": repository.full_name},
                "pusher": {"name": payload.get("pusher") or ""},
                "sender": {"login": payload.get("pusher") or ""},
                "head_commit": {"id": after, "message": head_summary},
            },
            display_title=head_summary.split("\n", 1)[0],
            changed=changed_paths(settings, repository.id, before, after),
        )
        created.extend(runs_for_trigger(session, settings, repository, trigger))
        if ref == f"refs/heads/{repository.default_branch}":
            sync_schedules(session, settings, repository, after)
    return created


def _commit_summary(settings: Settings, repository_id: int, sha: str) -> str:
    try:
        commit = store.open_repository(settings, repository_id)[sha].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return ""
    return commit.message.strip()[:1024]


def handle_pull_request(
    session: Session, settings: Settings, payload: dict[str, Any]
) -> list[WorkflowRun]:
    """The pulls service's `pull_request` event, for two workflow events:

    - `pull_request` runs on `refs/pull/{n}/merge`, the test merge of the head into the base's
      tip (written here if the pull requests job has not yet): workflows are read from it and
      `GITHUB_SHA` is it. A pull request that conflicts has no merge commit and gets no run,
      as on GitHub. A head in a fork runs without secrets and with a read-only token.
    - `pull_request_target` runs in the base: workflows from the base branch's tip, which is
      `GITHUB_SHA`, `GITHUB_REF` the base branch, with secrets and the workflow's token even
      for a fork (which is why its workflow never comes from the head)."""
    if not settings.actions_enabled:
        return []
    repository = session.get(Repository, int(payload["repository_id"]))
    if repository is None or repository.is_archived:
        return []
    from opencodehub.pulls import merge as pull_merge
    from opencodehub.pulls.models import PullRequest

    pull = session.get(PullRequest, int(payload["pull_request_id"]))
    if pull is None or pull.repository_id != repository.id:
        return []
    action = str(payload.get("action", ""))
    head_sha = str(payload.get("head_sha") or pull.head_sha)
    is_fork = pull.head_repository_id != repository.id
    title = pull.issue.title if pull.issue is not None else ""
    base_ref = str(payload.get("base_ref") or pull.base_ref)
    head_ref = str(payload.get("head_ref") or pull.head_ref)
    git = store.open_repository(settings, repository.id)
    try:
        base_tip = git.references.get(f"refs/heads/{base_ref}")
        base_sha = str(base_tip.peel(pygit2.Commit).id) if base_tip is not None else pull.base_sha
    except (ValueError, pygit2.GitError):
        base_sha = pull.base_sha
    head_repository = (
        session.get(Repository, pull.head_repository_id) if pull.head_repository_id else None
    )
    event_payload = {
        "action": action,
        "number": pull.number,
        "pull_request": {
            "id": pull.id,
            "number": pull.number,
            "title": title,
            "head": {
                "ref": head_ref,
                "sha": head_sha,
                "repo": {"full_name": head_repository.full_name} if head_repository else None,
            },
            "base": {
                "ref": base_ref,
                "sha": base_sha,
                "repo": {"full_name": repository.full_name},
            },
            "merged": bool(payload.get("merged")),
        },
        "repository": {"id": repository.id, "full_name": repository.full_name},
    }
    changed = changed_paths(settings, repository.id, pull.base_sha, head_sha)
    created: list[WorkflowRun] = []

    merge_sha: str | None
    merge_ref = pull_merge.test_merge_ref(pull.number)
    if action == "closed" or pull.merged or not pull.is_open:
        existing = git.references.get(merge_ref)
        merge_sha = str(existing.target) if existing is not None else head_sha
    else:
        try:
            merge_sha = pull_merge.update_test_merge(
                settings, repository.id, pull.number, base_sha, head_sha
            )
        except pull_merge.RefMoved:
            existing = git.references.get(merge_ref)
            merge_sha = str(existing.target) if existing is not None else None
    if merge_sha is not None:
        trigger = Trigger(
            event="pull_request",
            trigger_key=f"pr:{pull.id}:{action}"[:128],
            head_sha=merge_sha,
            head_ref=merge_ref,
            actor_id=payload.get("actor_id"),
            payload=event_payload,
            is_fork=is_fork,
            display_title=title,
            action=action,
            base_ref=base_ref,
            changed=changed,
        )
        created.extend(runs_for_trigger(session, settings, repository, trigger))

    target = Trigger(
        event="pull_request_target",
        trigger_key=f"prt:{pull.id}:{action}:{head_sha}"[:128],
        head_sha=base_sha,
        head_ref=f"refs/heads/{base_ref}",
        actor_id=payload.get("actor_id"),
        payload=event_payload,
        is_fork=False,
        display_title=title,
        action=action,
        base_ref=base_ref,
        changed=changed,
    )
    created.extend(runs_for_trigger(session, settings, repository, target))
    return created


# Schedules --------------------------------------------------------------------------------------


def sync_schedules(session: Session, settings: Settings, repository: Repository, sha: str) -> None:
    """Keep the `schedule:` crons of the default branch's workflows in the schedule table."""
    wanted: set[tuple[str, str]] = set()
    for file in read_workflow_files(settings, repository.id, sha):
        workflow, _error = parse(file)
        if workflow is None:
            continue
        for cron in workflow.schedules:
            wanted.add((file.path, str(cron)[:128]))
    existing = session.scalars(
        select(WorkflowSchedule).where(WorkflowSchedule.repository_id == repository.id)
    ).all()
    have = {(row.workflow_path, row.cron): row for row in existing}
    for key, row in have.items():
        if key not in wanted:
            session.delete(row)
    for path, cron in wanted - set(have):
        try:
            with session.begin_nested():
                session.add(
                    WorkflowSchedule(repository_id=repository.id, workflow_path=path, cron=cron)
                )
        except IntegrityError:
            continue  # another worker added it


def fire_schedules(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Create the runs whose cron fired since the last check. The fire time is the trigger key,
    so any number of workers firing the same minute create one run."""
    from croniter import croniter

    now = now or utcnow()
    fired = 0
    for row in session.scalars(select(WorkflowSchedule)).all():
        try:
            fire_time = croniter(row.cron, now).get_prev(datetime)
        except (ValueError, KeyError):
            continue
        if fire_time <= row.since or now - fire_time > timedelta(hours=1):
            continue
        repository = session.get(Repository, row.repository_id)
        if repository is None or repository.is_archived:
            continue
        git = store.open_repository(settings, repository.id)
        try:
            sha = str(
                git.references[f"refs/heads/{repository.default_branch}"].peel(pygit2.Commit).id
            )
        except (KeyError, pygit2.GitError):
            continue
        files = [
            f
            for f in read_workflow_files(settings, repository.id, sha)
            if f.path == row.workflow_path
        ]
        if not files:
            continue
        workflow, _error = parse(files[0])
        if workflow is None or row.cron not in workflow.schedules:
            continue
        trigger = Trigger(
            event="schedule",
            trigger_key=f"schedule:{crypto.sha256_hex(row.cron)[:16]}:{isoformat(fire_time)}",
            head_sha=sha,
            head_ref=f"refs/heads/{repository.default_branch}",
            actor_id=None,
            payload={"schedule": row.cron},
            display_title=workflow.name,
        )
        if create_run(session, settings, repository, workflow, trigger) is not None:
            fired += 1
    return fired


# Secrets and variables --------------------------------------------------------------------------


def set_secret(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    name: str,
    value: str,
) -> bool:
    """Create or replace a secret; True when created."""
    import re

    authorize(session, actor, repository, Permission.ADMIN)
    if not re.match(SECRET_NAME_PATTERN, name) or name.upper().startswith("GITHUB_"):
        raise ValidationFailed.invalid(
            "Secret",
            "name",
            "Secret names are letters, digits and _, and may not start with GITHUB_",
        )
    if len(value.encode()) > 48 * 1024:
        raise ValidationFailed.invalid("Secret", "value", "Secrets are at most 48 KB")
    upper = name.upper()
    row = session.scalar(
        select(ActionSecret).where(
            ActionSecret.repository_id == repository.id, ActionSecret.name == upper
        )
    )
    encrypted = crypto.encrypt(settings.secret, value)
    if row is not None:
        row.encrypted_value = encrypted
        row.updated_at = utcnow()
        return False
    session.add(ActionSecret(repository_id=repository.id, name=upper, encrypted_value=encrypted))
    session.flush()
    return True


def list_secrets(session: Session, actor: Actor, repository: Repository) -> list[ActionSecret]:
    authorize(session, actor, repository, Permission.ADMIN)
    return list(
        session.scalars(
            select(ActionSecret)
            .where(ActionSecret.repository_id == repository.id)
            .order_by(ActionSecret.name)
        )
    )


def delete_secret(session: Session, actor: Actor, repository: Repository, name: str) -> None:
    authorize(session, actor, repository, Permission.ADMIN)
    row = session.scalar(
        select(ActionSecret).where(
            ActionSecret.repository_id == repository.id, ActionSecret.name == name.upper()
        )
    )
    if row is None:
        raise NotFound()
    session.delete(row)


def set_variable(
    session: Session, actor: Actor, repository: Repository, name: str, value: str
) -> None:
    import re

    authorize(session, actor, repository, Permission.ADMIN)
    if not re.match(SECRET_NAME_PATTERN, name) or name.upper().startswith("GITHUB_"):
        raise ValidationFailed.invalid("Variable", "name", "invalid variable name")
    row = session.scalar(
        select(ActionVariable).where(
            ActionVariable.repository_id == repository.id, ActionVariable.name == name.upper()
        )
    )
    if row is None:
        session.add(ActionVariable(repository_id=repository.id, name=name.upper(), value=value))
    else:
        row.value = value
    session.flush()
