"""Web pages for Actions: runs, jobs with live logs (Server-Sent Events), runner settings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Form, Query, Request, Response
from fastapi.responses import StreamingResponse

from opencodehub.accounts.models import Permission
from opencodehub.actions import logs, runners, service
from opencodehub.actions.models import (
    Conclusion,
    JobStatus,
    RunStatus,
    WorkflowJob,
    WorkflowRun,
)
from opencodehub.core.errors import Conflict, NotFound, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep, actor_for_request
from opencodehub.repos import service as repos
from opencodehub.repos.views import _load, _page, ago
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.flash import redirect
from opencodehub.web.templating import render

router = APIRouter(include_in_schema=False)
RUNS_PER_PAGE = 30
SSE_KEEPALIVE_SECONDS = 15.0


def status_icon(status: Any, conclusion: Any) -> tuple[str, str]:
    """(symbol, css class) for a run's, job's or step's state."""
    if status in (RunStatus.COMPLETED, JobStatus.COMPLETED, "completed"):
        value = conclusion.value if isinstance(conclusion, Conclusion) else str(conclusion)
        return {
            "success": ("✓", "state-success"),
            "failure": ("✗", "state-failure"),
            "cancelled": ("⊘", "state-cancelled"),
            "skipped": ("⤼", "state-skipped"),
        }.get(value, ("•", "state-neutral"))
    if status in (RunStatus.IN_PROGRESS, JobStatus.IN_PROGRESS, "in_progress"):
        return ("●", "state-running")
    return ("○", "state-queued")


def _common(**context: Any) -> dict[str, Any]:
    return {"status_icon": status_icon, **context}


@router.get("/{owner}/{repo}/actions")
def runs_page(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    workflow: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    runs, total = service.list_runs(
        session,
        view.repository,
        workflow_id=workflow,
        offset=(page - 1) * RUNS_PER_PAGE,
        limit=RUNS_PER_PAGE,
    )
    return _page(
        request,
        "actions/runs.html",
        view,
        "actions",
        **_common(
            page_title=f"Actions · {view.repository.full_name}",
            runs=runs,
            workflows=service.list_workflows(session, view.repository),
            selected_workflow=workflow,
            page=page,
            has_next=page * RUNS_PER_PAGE < total,
            total=total,
        ),
    )


@dataclass
class JobRow:
    job: WorkflowJob
    level: int


def _job_levels(jobs: list[WorkflowJob]) -> list[list[WorkflowJob]]:
    """Jobs in columns by `needs` depth: the job graph as the run page draws it."""
    depth: dict[str, int] = {}
    keys = {job.job_key: job for job in jobs}

    def level(key: str, seen: frozenset[str] = frozenset()) -> int:
        if key in depth:
            return depth[key]
        job = keys.get(key)
        if job is None or key in seen:
            return 0
        value = 1 + max((level(need, seen | {key}) for need in job.needs), default=-1)
        depth[key] = value
        return value

    columns: dict[int, list[WorkflowJob]] = {}
    for job in jobs:
        columns.setdefault(level(job.job_key), []).append(job)
    return [columns[index] for index in sorted(columns)]


@router.get("/{owner}/{repo}/actions/runs/{run_id}")
def run_page(
    request: Request,
    owner: str,
    repo: str,
    run_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    run = service.get_run(session, view.repository, run_id)
    jobs = service.run_jobs(session, run)
    return _page(
        request,
        "actions/run.html",
        view,
        "actions",
        **_common(
            page_title=f"{run.name} #{run.run_number} · {view.repository.full_name}",
            run=run,
            jobs=jobs,
            columns=_job_levels(jobs),
            annotations=service.run_annotations(session, run),
            error_lines=(run.error or "").splitlines(),
        ),
    )


@router.get("/{owner}/{repo}/actions/runs/{run_id}/live")
def run_live(
    request: Request,
    owner: str,
    repo: str,
    run_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    """The run page's state and job graph alone, which the page polls while the run goes on."""
    view = _load(session, settings, actor, owner, repo)
    run = service.get_run(session, view.repository, run_id)
    jobs = service.run_jobs(session, run)
    return render(
        request,
        "actions/_run_live.html",
        base=view.base,
        can_write=view.can_write,
        headers={"Cache-Control": "no-store"},
        **_common(run=run, jobs=jobs, columns=_job_levels(jobs)),
    )


@router.post("/{owner}/{repo}/actions/runs/{run_id}/cancel")
def cancel_run(
    request: Request,
    owner: str,
    repo: str,
    run_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    run = service.get_run(session, view.repository, run_id)
    try:
        service.cancel_run(session, settings, run)
    except Conflict as exc:
        return redirect(request, f"{view.base}/actions/runs/{run.id}", exc.message)
    return redirect(request, f"{view.base}/actions/runs/{run.id}", "The run is being cancelled.")


@router.post("/{owner}/{repo}/actions/runs/{run_id}/rerun")
def rerun(
    request: Request,
    owner: str,
    repo: str,
    run_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.WRITE)
    run = service.get_run(session, view.repository, run_id)
    try:
        service.rerun(session, settings, actor, run)
    except Conflict as exc:
        return redirect(request, f"{view.base}/actions/runs/{run.id}", exc.message)
    return redirect(request, f"{view.base}/actions/runs/{run.id}", "The run was started again.")


@router.get("/{owner}/{repo}/actions/runs/{run_id}/jobs/{job_id}")
def job_page(
    request: Request,
    owner: str,
    repo: str,
    run_id: int,
    job_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    view = _load(session, settings, actor, owner, repo)
    run = service.get_run(session, view.repository, run_id)
    job = service.get_job(session, view.repository, job_id)
    if job.run_id != run.id:
        raise NotFound()
    steps = service.job_steps(session, job)
    lines = logs.read(session, settings, job)
    by_step: dict[int | None, list[logs.Line]] = {}
    for line in lines:
        by_step.setdefault(line.step, []).append(line)
    return _page(
        request,
        "actions/job.html",
        view,
        "actions",
        **_common(
            page_title=f"{job.name} · {run.name} #{run.run_number}",
            run=run,
            job=job,
            jobs=service.run_jobs(session, run),
            steps=steps,
            lines_by_step=by_step,
            last_index=lines[-1].idx if lines else -1,
            live=job.status != JobStatus.COMPLETED,
        ),
    )


# Live logs --------------------------------------------------------------------------------------


def _job_for_stream(request: Request, owner: str, repo: str, job_id: int) -> int:
    with request.app.state.db.session() as session:
        actor = actor_for_request(request, session)
        repository = repos.get_for(session, actor, owner, repo, Permission.READ)
        return service.get_job(session, repository, job_id).id


def _snapshot(request: Request, job_id: int, after: int) -> tuple[list[logs.Line], dict[str, Any]]:
    settings = request.app.state.settings
    with request.app.state.db.session() as session:
        job = session.get(WorkflowJob, job_id)
        if job is None:
            return [], {"status": "completed", "conclusion": None, "steps": []}
        lines = logs.read(session, settings, job, after)
        state = {
            "status": job.status.value,
            "conclusion": job.conclusion.value if job.conclusion else None,
            "steps": [
                {
                    "number": step.number,
                    "name": step.name,
                    "status": step.status.value,
                    "conclusion": step.conclusion.value if step.conclusion else None,
                }
                for step in service.job_steps(session, job)
            ],
        }
        return lines, state


def _event(name: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/{owner}/{repo}/actions/jobs/{job_id}/logs/stream")
async def log_stream(
    request: Request,
    owner: str,
    repo: str,
    job_id: int,
    after: Annotated[int, Query(ge=-1, le=2**31)] = -1,
) -> StreamingResponse:
    """Server-Sent Events: `line` events (id = line index), `state` with step states, `done`
    when the job completed and every line was sent. `Last-Event-ID` resumes after a line."""
    job = await anyio.to_thread.run_sync(_job_for_stream, request, owner, repo, job_id)
    last_event = request.headers.get("last-event-id", "")
    start = int(last_event) if last_event.isdigit() and len(last_event) < 10 else after
    hub = logs.hub(request.app.state.settings.redis_url)

    async def events() -> AsyncIterator[str]:
        last = start
        previous_state: dict[str, Any] | None = None
        async with hub.listen(job) as listener:
            while True:
                lines, state = await anyio.to_thread.run_sync(_snapshot, request, job, last)
                for line in lines:
                    yield _event("line", {"step": line.step, "text": line.text}, line.idx)
                    last = line.idx
                if state != previous_state:
                    yield _event("state", state)
                    previous_state = state
                if lines:
                    continue
                if state["status"] == "completed":
                    yield _event("done", {"conclusion": state["conclusion"]})
                    return
                if not await listener.wait(SSE_KEEPALIVE_SECONDS):
                    yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# Settings: runners and secrets ------------------------------------------------------------------


@router.get("/{owner}/{repo}/settings/actions")
def settings_page(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.ADMIN)
    return _settings_page(request, session, settings, actor, view)


def _settings_page(
    request: Request,
    session: Any,
    settings: Any,
    actor: Any,
    view: Any,
    *,
    new_token: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    response = _page(
        request,
        "actions/settings.html",
        view,
        "settings",
        **_common(
            page_title=f"Actions settings · {view.repository.full_name}",
            runners=runners.list_runners(session, actor, repository=view.repository),
            runner_status=runners.runner_status,
            secrets=service.list_secrets(session, actor, view.repository),
            new_token=new_token,
            error=error,
            server_url=settings.effective_base_url,
        ),
    )
    response.status_code = status_code
    return response


@router.post("/{owner}/{repo}/settings/actions/registration-token")
def create_registration_token(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.ADMIN)
    _row, token = runners.create_registration_token(session, actor, repository=view.repository)
    return _settings_page(request, session, settings, actor, view, new_token=token)


@router.post("/{owner}/{repo}/settings/actions/secrets")
def add_secret(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    name: Annotated[str, Form(max_length=255)],
    value: Annotated[str, Form(max_length=48 * 1024)],
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.ADMIN)
    try:
        service.set_secret(session, settings, actor, view.repository, name, value)
    except ValidationFailed as exc:
        return _settings_page(
            request, session, settings, actor, view, error=exc.describe(), status_code=422
        )
    return redirect(request, f"{view.base}/settings/actions", f"Secret {name.upper()} saved.")


@router.post("/{owner}/{repo}/settings/actions/secrets/delete")
def remove_secret(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    name: Annotated[str, Form(max_length=255)],
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.ADMIN)
    service.delete_secret(session, actor, view.repository, name)
    return redirect(request, f"{view.base}/settings/actions", f"Secret {name.upper()} deleted.")


@router.post("/{owner}/{repo}/settings/actions/runners/{runner_id}/delete")
def remove_runner(
    request: Request,
    owner: str,
    repo: str,
    runner_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
) -> Response:
    view = _load(session, settings, actor, owner, repo, Permission.ADMIN)
    runners.delete_runner(session, actor, runner_id, repository=view.repository)
    return redirect(request, f"{view.base}/settings/actions", "The runner was removed.")


# Site administration ----------------------------------------------------------------------------


def _admin_page(
    request: Request, session: Any, settings: Any, actor: Any, new_token: str | None = None
) -> Response:
    return render(
        request,
        "actions/admin_runners.html",
        page_title="Runners · Site administration",
        runners=runners.list_runners(session, actor),
        runner_status=runners.runner_status,
        new_token=new_token,
        server_url=settings.effective_base_url,
        ago=ago,
    )


@router.get("/-/admin/runners")
def admin_runners(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
) -> Response:
    if not actor.is_site_admin:
        raise NotFound()
    return _admin_page(request, session, settings, actor)


@router.post("/-/admin/runners/registration-token")
def admin_registration_token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
) -> Response:
    if not actor.is_site_admin:
        raise NotFound()
    _row, token = runners.create_registration_token(session, actor)
    return _admin_page(request, session, settings, actor, new_token=token)


@router.post("/-/admin/runners/{runner_id}/delete")
def admin_delete_runner(
    request: Request,
    runner_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
) -> Response:
    if not actor.is_site_admin:
        raise NotFound()
    runners.delete_runner(session, actor, runner_id)
    return redirect(request, "/-/admin/runners", "The runner was removed.")


__all__ = ["WorkflowRun", "router"]
