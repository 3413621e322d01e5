"""The Git LFS HTTP API under `/{owner}/{repo}(.git)/info/lfs/`.

    POST objects/batch            the batch API (upload and download, `basic` transfer)
    PUT  objects/{oid}            proxied upload (transfer token), SHA-256 checked on the way
    GET  objects/{oid}            proxied download (transfer token)
    POST objects/verify           the verify action
    POST locks | GET locks | POST locks/verify | POST locks/{id}/unlock

Every answer is `application/vnd.git-lfs+json`, errors as `{"message", "documentation_url",
"request_id"}`. Callers authenticate as for git over HTTP (Basic with a password or a PAT,
`token`/`Bearer`), or with the `RemoteAuth` token `git-lfs-authenticate` gave over SSH; like git,
an anonymous caller who may not see a repository is asked for credentials (401) and a signed-in
one who may not see it gets 404.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound, OCHError, Unauthorized
from opencodehub.core.logging import get_logger
from opencodehub.core.routing import APIRouter
from opencodehub.db.engine import Database
from opencodehub.deps import actor_from_authorization
from opencodehub.lfs import service, tokens
from opencodehub.lfs.schemas import (
    BatchRequest,
    CreateLockRequest,
    ErrorResponse,
    LockListResponse,
    LockResponse,
    UnlockRequest,
    VerifyLocksRequest,
    VerifyLocksResponse,
    VerifyRequest,
    VerifyResponse,
)
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository
from opencodehub.storage import ObjectNotFound, StorageAdapter
from opencodehub.storage.responses import ObjectResponse
from opencodehub.storage.views import get_storage

log = get_logger("opencodehub.lfs")

router = APIRouter(include_in_schema=False)

# Bytes of a proxied upload's body handed from the event loop to the storage thread at a time.
BODY_BATCH_SIZE = 1024 * 1024

MEDIA_TYPE = "application/vnd.git-lfs+json"
DOCS_URL = "https://github.com/git-lfs/git-lfs/blob/main/docs/api"
REALM = 'Basic realm="OpenCodeHub"'
# A batch of 1000 objects is about 100 KB of JSON.
MAX_JSON_BODY = 1024 * 1024
PREFIX = "/{owner}/{repo}/info/lfs"

M = TypeVar("M", bound=BaseModel)


class LFSHTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        model.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = ErrorResponse(message=message, documentation_url=DOCS_URL, request_id=uuid.uuid4().hex)
    return _json(body, status, headers)


def _from_service_error(exc: OCHError) -> LFSHTTPError:
    return LFSHTTPError(exc.status_code, exc.message)


# Authentication and authorization ---------------------------------------------------------------


@dataclass(frozen=True)
class _Caller:
    actor: Actor
    repository: Repository


def _actor(
    session: Session, settings: Settings, authorization: str | None
) -> tuple[Actor, int | None, str | None]:
    """The caller, and for a RemoteAuth token the repository id and operation it is bound to."""
    if not authorization:
        return Actor.anonymous(), None, None
    remote = tokens.remote_auth_token(authorization)
    if remote is not None:
        try:
            return service.actor_from_auth_token(session, settings, remote)
        except NotFound:
            raise LFSHTTPError(401, "Bad credentials", {"LFS-Authenticate": REALM}) from None
    try:
        return actor_from_authorization(session, authorization), None, None
    except Unauthorized as exc:
        raise LFSHTTPError(401, exc.message, {"LFS-Authenticate": REALM}) from None


def _authorize(
    session: Session,
    settings: Settings,
    authorization: str | None,
    owner: str,
    repo_name: str,
    needed: Permission,
) -> _Caller:
    actor, bound_repository, bound_operation = _actor(session, settings, authorization)
    located = repos.locate(session, owner, repos.strip_git_suffix(repo_name))
    try:
        if located is None or (
            bound_repository is not None and bound_repository != located.repository.id
        ):
            raise NotFound()
        repos.authorize(session, actor, located.repository, needed)
    except (NotFound, Forbidden) as exc:
        if actor.is_anonymous:
            raise LFSHTTPError(
                401, "Authentication required.", {"LFS-Authenticate": REALM}
            ) from None
        if isinstance(exc, NotFound):
            raise LFSHTTPError(404, "Repository not found.") from None
        raise LFSHTTPError(403, exc.message) from None
    if bound_operation == "download" and needed > Permission.READ:
        raise LFSHTTPError(403, "The token was issued for downloads only.")
    return _Caller(actor, located.repository)


def _database(request: Request) -> Database:
    return request.app.state.db


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _in_thread(request: Request, work: Any, *args: Any) -> Any:
    """Run `work(session, *args)` in a worker thread with a unit of work of its own; LFS errors
    become the spec's error shape."""

    def run() -> Any:
        with _database(request).session() as session:
            try:
                return work(session, *args)
            except service.LockExists as exc:
                # Rendered while the session is open: the body shows the existing lock.
                return _conflict(exc)

    try:
        return await anyio.to_thread.run_sync(run)
    except LFSHTTPError as exc:
        return _error(exc.status, exc.message, exc.headers)
    except OCHError as exc:
        return _error(exc.status_code, exc.message)


async def _read_model(request: Request, model: type[M], *, required: bool = True) -> M | Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media not in (MEDIA_TYPE, "application/json"):
        return _error(415, f"Expected Content-Type {MEDIA_TYPE}.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            return _error(413, "The request body is too large.")
    if not body and not required:
        body = bytearray(b"{}")
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"Invalid request: {where or 'body'}: {first.get('msg', 'invalid')}")


# Batch ------------------------------------------------------------------------------------------


@router.post(PREFIX + "/objects/batch")
async def batch(owner: str, repo: str, request: Request) -> Response:
    parsed = await _read_model(request, BatchRequest)
    if isinstance(parsed, Response):
        return parsed
    settings = _settings(request)
    storage = get_storage(request)
    needed = Permission.WRITE if parsed.operation == "upload" else Permission.READ
    authorization = request.headers.get("authorization")

    def work(session: Session) -> Response:
        caller = _authorize(session, settings, authorization, owner, repo, needed)
        try:
            answer = service.batch(session, settings, storage, caller.repository, parsed)
        except OCHError as exc:
            raise _from_service_error(exc) from None
        return _json(answer)

    return await _in_thread(request, work)


# Transfers --------------------------------------------------------------------------------------


def _transfer_repository(session: Session, owner: str, repo: str) -> Repository:
    located = repos.locate(session, owner, repos.strip_git_suffix(repo))
    if located is None:
        raise LFSHTTPError(404, "Repository not found.")
    return located.repository


@router.put(PREFIX + "/objects/{oid}")
async def upload(owner: str, repo: str, oid: str, request: Request) -> Response:
    settings = _settings(request)
    storage = get_storage(request)
    token = tokens.remote_auth_token(request.headers.get("authorization"))

    def authorize(session: Session) -> tuple[int, int]:
        repository = _transfer_repository(session, owner, repo)
        try:
            claims = service.check_transfer_token(settings, token, repository.id, oid, "PUT")
        except NotFound:
            raise LFSHTTPError(401, "The upload link is invalid or has expired.") from None
        return repository.id, claims.size

    checked = await _in_thread(request, authorize)
    if isinstance(checked, Response):
        return checked
    repository_id, size = checked
    length = request.headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) != size):
        return _error(422, f"Content-Length must be the object's size, {size}.")
    body = _BlockingBody(request.stream())
    try:
        await anyio.to_thread.run_sync(service.store_upload, storage, oid, size, body)
    except service.ContentMismatch as exc:
        return _error(422, f"Upload rejected: {exc}.")
    except ClientDisconnect:
        log.info("lfs upload interrupted", oid=oid, repository_id=repository_id)
        return Response(status_code=400)

    def record(session: Session) -> Response:
        service.record_object(session, repository_id, oid, size)
        return Response(status_code=200)

    return await _in_thread(request, record)


@router.get(PREFIX + "/objects/{oid}")
def download(owner: str, repo: str, oid: str, request: Request) -> Response:
    settings = _settings(request)
    storage: StorageAdapter = get_storage(request)
    token = tokens.remote_auth_token(request.headers.get("authorization"))
    with _database(request).session() as session:
        located = repos.locate(session, owner, repos.strip_git_suffix(repo))
        if located is None:
            return _error(404, "Repository not found.")
        try:
            service.check_transfer_token(settings, token, located.repository.id, oid, "GET")
        except NotFound:
            return _error(401, "The download link is invalid or has expired.")
    try:
        stream = storage.get(service.object_key(oid))
    except ObjectNotFound:
        return _error(404, "Object does not exist.")
    return ObjectResponse(stream)


@router.post(PREFIX + "/objects/verify")
async def verify(owner: str, repo: str, request: Request) -> Response:
    parsed = await _read_model(request, VerifyRequest)
    if isinstance(parsed, Response):
        return parsed
    settings = _settings(request)
    storage = get_storage(request)
    authorization = request.headers.get("authorization")
    token = tokens.remote_auth_token(authorization)

    def work(session: Session) -> Response:
        transfer = tokens.read_transfer_token(settings.secret, token) if token else None
        if transfer is not None:
            repository = _transfer_repository(session, owner, repo)
            try:
                service.check_transfer_token(settings, token, repository.id, parsed.oid, "VERIFY")
            except NotFound:
                raise LFSHTTPError(401, "The verify link is invalid or has expired.") from None
            if transfer.size != parsed.size:
                raise LFSHTTPError(422, "The size differs from the one in the batch request.")
        else:
            repository = _authorize(
                session, settings, authorization, owner, repo, Permission.WRITE
            ).repository
        try:
            service.check_object(settings, parsed.oid, parsed.size)
            service.verify_upload(session, storage, repository, parsed.oid, parsed.size)
        except OCHError as exc:
            raise _from_service_error(exc) from None
        return _json(VerifyResponse(message="Verified."))

    return await _in_thread(request, work)


class _BlockingBody:
    """The request body as a blocking iterator, for a storage adapter in a worker thread.

    The server hands the body over in pieces of at most 64 KiB; each trip from the worker thread
    to the event loop and back costs more than the copy that joins pieces, so one trip collects
    about `BODY_BATCH_SIZE` bytes (16 times fewer trips for a large upload, one batch in memory).
    """

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                return
            yield chunk

    async def _next(self) -> bytes | None:
        pieces: list[bytes] = []
        size = 0
        while size < BODY_BATCH_SIZE:
            try:
                piece = await self._body.__anext__()
            except StopAsyncIteration:
                break
            if piece:
                pieces.append(piece)
                size += len(piece)
        if not pieces:
            return None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


# Locks ------------------------------------------------------------------------------------------


def _conflict(exc: service.LockExists) -> Response:
    return _json(LockResponse(lock=service.lock_json(exc.lock), message=exc.message), 409)


@router.post(PREFIX + "/locks")
async def create_lock(owner: str, repo: str, request: Request) -> Response:
    parsed = await _read_model(request, CreateLockRequest)
    if isinstance(parsed, Response):
        return parsed
    settings = _settings(request)
    authorization = request.headers.get("authorization")

    def work(session: Session) -> Response:
        caller = _authorize(session, settings, authorization, owner, repo, Permission.WRITE)
        lock = service.create_lock(session, caller.actor, caller.repository, parsed.path)
        return _json(LockResponse(lock=service.lock_json(lock)), 201)

    return await _in_thread(request, work)


@router.get(PREFIX + "/locks")
async def list_locks(owner: str, repo: str, request: Request) -> Response:
    settings = _settings(request)
    authorization = request.headers.get("authorization")
    params = request.query_params

    def work(session: Session) -> Response:
        caller = _authorize(session, settings, authorization, owner, repo, Permission.READ)
        locks, next_cursor = service.list_locks(
            session,
            caller.repository,
            path=params.get("path"),
            lock_id=params.get("id"),
            cursor=params.get("cursor"),
            limit=params.get("limit"),
        )
        return _json(
            LockListResponse(
                locks=[service.lock_json(lock) for lock in locks], next_cursor=next_cursor
            )
        )

    return await _in_thread(request, work)


@router.post(PREFIX + "/locks/verify")
async def verify_locks(owner: str, repo: str, request: Request) -> Response:
    parsed = await _read_model(request, VerifyLocksRequest, required=False)
    if isinstance(parsed, Response):
        return parsed
    settings = _settings(request)
    authorization = request.headers.get("authorization")

    def work(session: Session) -> Response:
        caller = _authorize(session, settings, authorization, owner, repo, Permission.WRITE)
        ours, theirs, next_cursor = service.verify_locks(
            session, caller.actor, caller.repository, cursor=parsed.cursor, limit=parsed.limit
        )
        return _json(
            VerifyLocksResponse(
                ours=[service.lock_json(lock) for lock in ours],
                theirs=[service.lock_json(lock) for lock in theirs],
                next_cursor=next_cursor,
            )
        )

    return await _in_thread(request, work)


@router.post(PREFIX + "/locks/{lock_id}/unlock")
async def unlock(owner: str, repo: str, lock_id: str, request: Request) -> Response:
    parsed = await _read_model(request, UnlockRequest, required=False)
    if isinstance(parsed, Response):
        return parsed
    settings = _settings(request)
    authorization = request.headers.get("authorization")

    def work(session: Session) -> Response:
        caller = _authorize(session, settings, authorization, owner, repo, Permission.WRITE)
        lock = service.unlock(session, caller.actor, caller.repository, lock_id, force=parsed.force)
        return _json(LockResponse(lock=service.lock_json(lock)))

    return await _in_thread(request, work)
