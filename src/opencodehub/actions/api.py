"""REST API for Actions runs, jobs, logs, secrets and runner registration, in GitHub's shapes.

Where OpenCodeHub differs from GitHub:
- `PUT /repos/{owner}/{repo}/actions/secrets/{name}` takes the plaintext `value` (over HTTPS)
  instead of a libsodium sealed box (`encrypted_value` + `key_id`); the server encrypts it at
  rest with the instance key. `GET .../actions/secrets/public-key` does not exist.
- `GET .../actions/jobs/{id}/logs` answers 200 `text/plain` directly instead of a redirect.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.accounts.schemas import SimpleUser, node_id
from opencodehub.actions import logs, runners, service
from opencodehub.actions.models import (
    JobStatus,
    Runner,
    Workflow,
    WorkflowJob,
    WorkflowRun,
)
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import isoformat
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository
from opencodehub.repos.schemas import urls_for

router = APIRouter(tags=["actions"])
REPO = "/repos/{owner}/{repo}/actions"
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]

# GitHub's statuses: jobs waiting on `needs` are "waiting" there too; runs held by a
# concurrency group are "pending".
_JOB_STATUS = {
    JobStatus.WAITING: "waiting",
    JobStatus.QUEUED: "queued",
    JobStatus.IN_PROGRESS: "in_progress",
    JobStatus.COMPLETED: "completed",
}


def _repo(session: Session, actor: Actor, owner: str, name: str, action: Permission) -> Repository:
    return repos.get_for(session, actor, owner, name, action)


def _user(user: User | None, settings: Settings) -> dict[str, Any] | None:
    if user is None:
        return None
    return SimpleUser.of(user, urls_for(settings)).model_dump(mode="json")


def _repo_api(settings: Settings, repo: Repository) -> str:
    base = settings.effective_base_url
    return f"{base}/api/v3/repos/{quote(repo.owner.username)}/{quote(repo.name)}"


def _repo_html(settings: Settings, repo: Repository) -> str:
    return f"{settings.effective_base_url}/{quote(repo.owner.username)}/{quote(repo.name)}"


def _minimal_repo(settings: Settings, repo: Repository) -> dict[str, Any]:
    return {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.is_private,
        "owner": _user(repo.owner, settings),
        "html_url": _repo_html(settings, repo),
        "url": _repo_api(settings, repo),
    }


def run_json(settings: Settings, run: WorkflowRun) -> dict[str, Any]:
    repo = run.repository
    api = f"{_repo_api(settings, repo)}/actions/runs/{run.id}"
    return {
        "id": run.id,
        "name": run.name,
        "node_id": node_id("WorkflowRun", run.id),
        "head_branch": run.head_branch,
        "head_sha": run.head_sha,
        "path": run.workflow_path,
        "display_title": run.display_title or run.name,
        "run_number": run.run_number,
        "event": run.event,
        "status": run.status.value,
        "conclusion": run.conclusion.value if run.conclusion else None,
        "workflow_id": run.workflow_id,
        "url": api,
        "html_url": f"{_repo_html(settings, repo)}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": isoformat(run.created_at),
        "updated_at": isoformat(run.updated_at),
        "actor": _user(run.actor, settings),
        "triggering_actor": _user(run.triggering_actor, settings),
        "run_attempt": run.run_attempt,
        "referenced_workflows": [],
        "run_started_at": isoformat(run.run_started_at or run.created_at),
        "jobs_url": f"{api}/jobs",
        "logs_url": f"{api}/logs",
        "cancel_url": f"{api}/cancel",
        "rerun_url": f"{api}/rerun",
        "previous_attempt_url": f"{api}/attempts/{run.run_attempt - 1}"
        if run.run_attempt > 1
        else None,
        "workflow_url": f"{_repo_api(settings, repo)}/actions/workflows/{run.workflow_id}",
        "head_commit": {"id": run.head_sha, "message": run.display_title},
        "repository": _minimal_repo(settings, repo),
        "head_repository": _minimal_repo(settings, repo),
        # OpenCodeHub: the parser's errors when the workflow file is invalid.
        "error": run.error,
    }


def job_json(session: Session, settings: Settings, job: WorkflowJob) -> dict[str, Any]:
    run = job.run
    repo = run.repository
    api = _repo_api(settings, repo)
    steps = service.job_steps(session, job)
    return {
        "id": job.id,
        "run_id": run.id,
        "run_url": f"{api}/actions/runs/{run.id}",
        "run_attempt": run.run_attempt,
        "node_id": node_id("WorkflowJob", job.id),
        "head_sha": run.head_sha,
        "head_branch": run.head_branch,
        "url": f"{api}/actions/jobs/{job.id}",
        "html_url": f"{_repo_html(settings, repo)}/actions/runs/{run.id}/jobs/{job.id}",
        "status": _JOB_STATUS[job.status],
        "conclusion": job.conclusion.value if job.conclusion else None,
        "created_at": isoformat(job.created_at),
        "started_at": isoformat(job.started_at or job.created_at),
        "completed_at": isoformat(job.completed_at),
        "name": job.name,
        "steps": [
            {
                "name": step.name,
                "status": step.status.value,
                "conclusion": step.conclusion.value if step.conclusion else None,
                "number": step.number + 1,
                "started_at": isoformat(step.started_at),
                "completed_at": isoformat(step.completed_at),
            }
            for step in steps
        ],
        "check_run_url": f"{api}/check-runs/{job.id}",
        "labels": list(job.runs_on),
        "runner_id": job.runner_id,
        "runner_name": job.runner_name or None,
        "runner_group_id": None,
        "runner_group_name": None,
        "workflow_name": run.name,
    }


def workflow_json(settings: Settings, repo: Repository, workflow: Workflow) -> dict[str, Any]:
    html = _repo_html(settings, repo)
    return {
        "id": workflow.id,
        "node_id": node_id("Workflow", workflow.id),
        "name": workflow.name,
        "path": workflow.path,
        "state": workflow.state,
        "created_at": isoformat(workflow.created_at),
        "updated_at": isoformat(workflow.updated_at),
        "url": f"{_repo_api(settings, repo)}/actions/workflows/{workflow.id}",
        "html_url": f"{html}/blob/{quote(repo.default_branch)}/{workflow.path}",
        "badge_url": f"{html}/workflows/{quote(workflow.name)}/badge.svg",
    }


def runner_json(runner: Runner) -> dict[str, Any]:
    return {
        "id": runner.id,
        "name": runner.name,
        "os": "Linux",
        "status": runners.runner_status(runner),
        "busy": runner.busy,
        "labels": [
            {"id": index + 1, "name": label, "type": "custom"}
            for index, label in enumerate(runner.labels)
        ],
    }


def _paged(request: Request, settings: Settings, page: Page, total: int) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        f"{settings.effective_base_url}{request.url.path}",
        params,
        page,
        total=total,
        has_next=page.offset + page.per_page < total,
    )
    return {"Link": header} if header else {}


# Runs -------------------------------------------------------------------------------------------


def _list_runs(
    request: Request,
    session: Session,
    settings: Settings,
    repo: Repository,
    workflow_id: int | None,
    event: str | None,
    status: str | None,
    branch: str | None,
    head_sha: str | None,
    page: int | None,
    per_page: int | None,
) -> JSONResponse:
    paging = Page.of(page, per_page)
    runs, total = service.list_runs(
        session,
        repo,
        workflow_id=workflow_id,
        event=event,
        status=status,
        branch=branch,
        head_sha=head_sha,
        offset=paging.offset,
        limit=paging.limit,
    )
    return JSONResponse(
        {"total_count": total, "workflow_runs": [run_json(settings, run) for run in runs]},
        headers=_paged(request, settings, paging, total),
    )


@router.get(REPO + "/runs")
def list_runs(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    event: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    head_sha: Annotated[str | None, Query(max_length=64)] = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> JSONResponse:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    return _list_runs(
        request,
        session,
        settings,
        repository,
        None,
        event,
        status,
        branch,
        head_sha,
        page,
        per_page,
    )


@router.get(REPO + "/workflows/{workflow_id}/runs")
def list_workflow_runs(
    request: Request,
    owner: str,
    repo: str,
    workflow_id: Annotated[str, Path(max_length=255)],
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    event: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    head_sha: Annotated[str | None, Query(max_length=64)] = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> JSONResponse:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    workflow = service.find_workflow(session, repository, workflow_id)
    return _list_runs(
        request,
        session,
        settings,
        repository,
        workflow.id,
        event,
        status,
        branch,
        head_sha,
        page,
        per_page,
    )


@router.get(REPO + "/runs/{run_id}")
def get_run(
    owner: str,
    repo: str,
    run_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    return run_json(settings, service.get_run(session, repository, run_id))


@router.get(REPO + "/runs/{run_id}/jobs")
def list_run_jobs(
    request: Request,
    owner: str,
    repo: str,
    run_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> JSONResponse:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    run = service.get_run(session, repository, run_id)
    jobs = service.run_jobs(session, run)
    paging = Page.of(page, per_page)
    shown = jobs[paging.offset : paging.offset + paging.limit]
    return JSONResponse(
        {"total_count": len(jobs), "jobs": [job_json(session, settings, job) for job in shown]},
        headers=_paged(request, settings, paging, len(jobs)),
    )


@router.post(REPO + "/runs/{run_id}/cancel", status_code=202)
def cancel_run(
    owner: str,
    repo: str,
    run_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.WRITE)
    service.cancel_run(session, settings, service.get_run(session, repository, run_id))
    return {}


@router.post(REPO + "/runs/{run_id}/rerun", status_code=201)
def rerun(
    owner: str,
    repo: str,
    run_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.WRITE)
    service.rerun(session, settings, actor, service.get_run(session, repository, run_id))
    return {}


# Jobs -------------------------------------------------------------------------------------------


@router.get(REPO + "/jobs/{job_id}")
def get_job(
    owner: str,
    repo: str,
    job_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    return job_json(session, settings, service.get_job(session, repository, job_id))


@router.get(REPO + "/jobs/{job_id}/logs")
def job_logs(
    owner: str,
    repo: str,
    job_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> PlainTextResponse:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    job = service.get_job(session, repository, job_id)
    lines: list[logs.Line] = []
    after = -1
    while True:
        batch = logs.read(session, settings, job, after)
        if not batch:
            break
        lines.extend(batch)
        after = batch[-1].idx
        if job.log_key:
            break
    return PlainTextResponse(logs.plain_text(lines))


# Workflows and dispatch -------------------------------------------------------------------------


@router.get(REPO + "/workflows")
def list_workflows(
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    workflows = service.list_workflows(session, repository)
    return {
        "total_count": len(workflows),
        "workflows": [workflow_json(settings, repository, wf) for wf in workflows],
    }


@router.get(REPO + "/workflows/{workflow_id}")
def get_workflow(
    owner: str,
    repo: str,
    workflow_id: Annotated[str, Path(max_length=255)],
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    return workflow_json(
        settings, repository, service.find_workflow(session, repository, workflow_id)
    )


class DispatchBody(BaseModel):
    ref: str = Field(min_length=1, max_length=255)
    inputs: dict[str, Any] = Field(default_factory=dict)


@router.post(REPO + "/workflows/{workflow_id}/dispatches", status_code=204)
def dispatch(
    owner: str,
    repo: str,
    workflow_id: Annotated[str, Path(max_length=255)],
    body: DispatchBody,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    repository = _repo(session, actor, owner, repo, Permission.WRITE)
    if workflow_id.isdigit():
        path = service.find_workflow(session, repository, workflow_id).path
    else:
        if "/" in workflow_id or not workflow_id.endswith((".yml", ".yaml")):
            raise NotFound()
        path = f"{service.WORKFLOW_DIR}/{workflow_id}"
    service.dispatch(session, settings, actor, repository, path, body.ref, body.inputs)
    return Response(status_code=204)


# Secrets ----------------------------------------------------------------------------------------


class SecretBody(BaseModel):
    # OpenCodeHub takes the plaintext over HTTPS where GitHub takes a sealed box.
    value: str = Field(max_length=48 * 1024)


@router.get(REPO + "/secrets")
def list_secrets(owner: str, repo: str, session: SessionDep, actor: CurrentActor) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    rows = service.list_secrets(session, actor, repository)
    return {
        "total_count": len(rows),
        "secrets": [
            {
                "name": row.name,
                "created_at": isoformat(row.created_at),
                "updated_at": isoformat(row.updated_at),
            }
            for row in rows
        ],
    }


@router.put(REPO + "/secrets/{name}")
def put_secret(
    owner: str,
    repo: str,
    name: Annotated[str, Path(max_length=255)],
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    body: Annotated[SecretBody, Body()],
) -> Response:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    created = service.set_secret(session, settings, actor, repository, name, body.value)
    return JSONResponse({}, status_code=201) if created else Response(status_code=204)


@router.delete(REPO + "/secrets/{name}", status_code=204)
def delete_secret(
    owner: str,
    repo: str,
    name: Annotated[str, Path(max_length=255)],
    session: SessionDep,
    actor: CurrentActor,
) -> Response:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    service.delete_secret(session, actor, repository, name)
    return Response(status_code=204)


# Runners ----------------------------------------------------------------------------------------


@router.post(REPO + "/runners/registration-token", status_code=201)
def repo_registration_token(
    owner: str, repo: str, session: SessionDep, actor: CurrentActor
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    row, token = runners.create_registration_token(session, actor, repository=repository)
    return {"token": token, "expires_at": isoformat(row.expires_at)}


@router.post("/orgs/{org}/actions/runners/registration-token", status_code=201)
def org_registration_token(org: str, session: SessionDep, actor: CurrentActor) -> dict[str, Any]:
    organization = repos.get_account(session, org)
    if organization is None or not organization.is_organization:
        raise NotFound()
    row, token = runners.create_registration_token(session, actor, organization=organization)
    return {"token": token, "expires_at": isoformat(row.expires_at)}


@router.get(REPO + "/runners")
def list_repo_runners(
    owner: str, repo: str, session: SessionDep, actor: CurrentActor
) -> dict[str, Any]:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    found = runners.list_runners(session, actor, repository=repository)
    return {"total_count": len(found), "runners": [runner_json(r) for r in found]}


@router.get("/orgs/{org}/actions/runners")
def list_org_runners(org: str, session: SessionDep, actor: CurrentActor) -> dict[str, Any]:
    organization = repos.get_account(session, org)
    if organization is None or not organization.is_organization:
        raise NotFound()
    found = runners.list_runners(session, actor, organization=organization)
    return {"total_count": len(found), "runners": [runner_json(r) for r in found]}


@router.delete(REPO + "/runners/{runner_id}", status_code=204)
def delete_repo_runner(
    owner: str, repo: str, runner_id: RecordId, session: SessionDep, actor: CurrentActor
) -> Response:
    repository = _repo(session, actor, owner, repo, Permission.READ)
    runners.delete_runner(session, actor, runner_id, repository=repository)
    return Response(status_code=204)
