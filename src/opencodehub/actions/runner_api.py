"""The runner protocol's server side (see docs/runner-protocol.md), under `/-/runner/v1`.

Runners authenticate with `Authorization: Bearer <runner secret>` (issued at registration; only
its SHA-256 is stored). No cookie is ever accepted here, so these routes need no CSRF token.
Errors are JSON (`{"message": …}`) like the REST API's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from opencodehub.actions import logs, runners, service
from opencodehub.actions.models import JobStatus, Runner, WorkflowJob
from opencodehub.actions.queue import get_queue
from opencodehub.config import Settings
from opencodehub.core.crypto import sha256_hex
from opencodehub.core.errors import OCHError, Unauthorized
from opencodehub.core.routing import APIRouter, DeferredAPIRoute
from opencodehub.db.engine import Database
from opencodehub.runner.protocol import (
    PREFIX,
    AnnotationIn,
    Heartbeat,
    HeartbeatResponse,
    JobAssignment,
    JobCompletion,
    JobRequest,
    LogAck,
    LogBatch,
    RegisterRequest,
    RegisterResponse,
    Released,
    StepUpdate,
)


class _JSONErrorRoute(DeferredAPIRoute):
    """Answer errors as JSON: these paths are outside /api/v3, where the app renders HTML."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except OCHError as exc:
                return JSONResponse(exc.body(), exc.status_code, headers=exc.headers)
            except RequestValidationError as exc:
                return JSONResponse(
                    {"message": "Validation Failed", "errors": _plain(exc.errors())}, 422
                )

        return handler


def _plain(errors: Any) -> Any:
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in errors
    ]


router = APIRouter(prefix=PREFIX, route_class=_JSONErrorRoute, include_in_schema=False)


class BadRunnerCredentials(Unauthorized):
    default_message = "Bad runner credentials"


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _database(request: Request) -> Database:
    return request.app.state.db


def _runner_secret(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise BadRunnerCredentials()
    return value.strip()


_RUNNER_BY_SECRET = select(Runner).where(Runner.token_hash == bindparam("token_hash"))


def _runner(session: Session, secret: str) -> Runner:
    if len(secret) > 255:
        raise BadRunnerCredentials()
    runner = session.scalar(_RUNNER_BY_SECRET, {"token_hash": sha256_hex(secret)})
    if runner is None:
        raise BadRunnerCredentials()
    return runner


def _in_session(
    request: Request, work: Callable[[Session, Runner], Any], *, ends_job: bool = False
) -> Any:
    """Authenticate the runner and run `work` in one unit of work."""
    secret = _runner_secret(request)
    with _database(request).session() as session:
        if ends_job:
            service.read_committed(session)
        runner = _runner(session, secret)
        return work(session, runner)


@router.post("/register", response_model=RegisterResponse, status_code=201)
def register(request: Request, body: RegisterRequest) -> RegisterResponse:
    with _database(request).session() as session:
        runner, secret = runners.register_runner(
            session, body.token, body.name, body.labels, body.version
        )
        return RegisterResponse(id=runner.id, name=runner.name, labels=runner.labels, secret=secret)


def _claim(
    request: Request, secret: str, job_id: int | None
) -> tuple[JobAssignment | None, list[str], list[str] | None]:
    """A job for the runner (from the queue's hint, or the database's oldest), the runner's
    labels, and, when the hinted job is still queued but not for this runner, the job's
    labels: one unit of work, as each extra transaction is latency on every poll."""
    settings = _settings(request)
    with _database(request).session() as session:
        runner = _runner(session, secret)
        runner.last_heartbeat_at = service.utcnow()
        labels = list(runner.labels)
        # The runner's row is written once, with the rest of the claim (its heartbeat and
        # whether it is busy), not before the search and again after it.
        with session.no_autoflush:
            if job_id is None:
                job = service.claim_from_database(session, runner)
            else:
                job = service.claim_for_runner(session, job_id, runner)
            if job is None:
                hinted = session.get(WorkflowJob, job_id) if job_id is not None else None
                if hinted is not None and hinted.status == JobStatus.QUEUED:
                    return None, labels, list(hinted.runs_on)
                return None, labels, None
        spec = service.start_job(session, settings, job)
        return (
            JobAssignment(
                spec=spec,
                labels=list(job.runs_on),
                heartbeat_interval=service.HEARTBEAT_INTERVAL,
                lease_seconds=service.LEASE_SECONDS,
            ),
            labels,
            None,
        )


@router.post("/jobs/request", response_model=JobAssignment)
async def request_job(request: Request, body: JobRequest) -> Response:
    """The long poll: a job for this runner, or 204 after `wait_seconds`."""
    secret = _runner_secret(request)
    assignment, labels, _ = await anyio.to_thread.run_sync(_claim, request, secret, None)
    queue = get_queue(_settings(request).redis_url)
    taken_from_database = assignment is not None
    deadline = time.monotonic() + body.wait_seconds
    passed: set[int] = set()
    while assignment is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            break
        job_id = await queue.pop(labels, min(remaining, 5.0))
        if job_id is not None:
            assignment, _, waiting = await anyio.to_thread.run_sync(_claim, request, secret, job_id)
            if waiting is not None:
                # Another repository's job (this runner is scoped): give the id back for the
                # runners that may take it, and do not spin on it.
                queue.push(job_id, waiting)
                if job_id in passed:
                    await asyncio.sleep(0.2)
                passed.add(job_id)
        elif time.monotonic() < deadline:
            # Nothing came through the queue for a while: look in the database, in case the
            # queue lost an id (its sweep would find it too, later).
            assignment, _, _ = await anyio.to_thread.run_sync(_claim, request, secret, None)
            taken_from_database = assignment is not None
    if assignment is None:
        return Response(status_code=204)
    discard = getattr(queue, "discard", None)
    if taken_from_database and discard is not None:
        discard(assignment.spec.job_id)  # its id is still queued: skip it when it comes up
    if await request.is_disconnected():
        # Nobody would receive the job: give it back now rather than after the lease expires.
        await anyio.to_thread.run_sync(_unclaim, request, secret, assignment.spec.job_id)
        return Response(status_code=204)
    return JSONResponse(assignment.model_dump(mode="json"))


def _unclaim(request: Request, secret: str, job_id: int) -> None:
    with _database(request).session() as session:
        service.unclaim_job(session, _settings(request), _runner(session, secret), job_id)


@router.post("/heartbeat", response_model=HeartbeatResponse)
def heartbeat(request: Request, body: Heartbeat) -> HeartbeatResponse:
    def work(session: Session, runner: Runner) -> HeartbeatResponse:
        cancel, unknown = service.heartbeat(session, runner, body.job_ids)
        return HeartbeatResponse(cancel=cancel, unknown=unknown)

    return _in_session(request, work)


@router.post("/jobs/{job_id}/steps", status_code=204)
def step(request: Request, job_id: int, body: StepUpdate) -> Response:
    def work(session: Session, runner: Runner) -> None:
        job = service.held_job(session, runner, job_id)
        service.update_step(session, job, body.index, body.name, body.status, body.conclusion)
        service.notify_logs_after_commit(session, _settings(request), job.id)

    _in_session(request, work)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/logs", response_model=LogAck)
def append_logs(request: Request, job_id: int, body: LogBatch) -> LogAck:
    def work(session: Session, runner: Runner) -> LogAck:
        job = service.held_job(session, runner, job_id)
        next_index = logs.append(session, job, body.start, body.lines)
        for update in body.steps:
            service.update_step(
                session, job, update.index, update.name, update.status, update.conclusion
            )
        service.notify_logs_after_commit(session, _settings(request), job.id)
        return LogAck(next_index=next_index)

    return _in_session(request, work)


@router.post("/jobs/{job_id}/annotations", status_code=204)
def annotate(request: Request, job_id: int, body: AnnotationIn) -> Response:
    def work(session: Session, runner: Runner) -> None:
        job = service.held_job(session, runner, job_id)
        service.add_annotation(session, job, body.level, body.message, body.file, body.line)

    _in_session(request, work)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/complete", status_code=204)
def complete(request: Request, job_id: int, body: JobCompletion) -> Response:
    def work(session: Session, runner: Runner) -> None:
        job = service.held_job(session, runner, job_id)
        service.complete_job(session, _settings(request), job, body.result, body.logs)

    _in_session(request, work, ends_job=True)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/release", response_model=Released)
def release(request: Request, job_id: int) -> Released:
    """A runner shutting down hands a job back: queued again if no step started."""

    def work(session: Session, runner: Runner) -> Released:
        job = service.held_job(session, runner, job_id)
        requeued = service.release_job(
            session, _settings(request), job, "The runner shut down before the job finished."
        )
        return Released(requeued=requeued)

    return _in_session(request, work, ends_job=True)
