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

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.types import Send

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound, OCHError, Unauthorized
from opencodehub.core.logging import get_logger
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
from opencodehub.storage import ObjectNotFound, ObjectStream, StorageAdapter
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


# Bytes of a proxied download read from the backend ahead of the client (plus one chunk).
READ_AHEAD_BYTES = 8 * 1024 * 1024
# Downloads of this process that may read that far ahead at once. The others read one chunk
# ahead, so a crowd of downloads holds about three chunks each (queued, being sent, being read).
MAX_DEEP_READ_AHEADS = 8
DEEP_READ_AHEADS = threading.BoundedSemaphore(MAX_DEEP_READ_AHEADS)


class ObjectResponse(StreamingResponse):
    """A stored object as the response body, read ahead of the client by a thread of its own.

    `StreamingResponse` over a blocking iterator reads a chunk in a worker thread, sends it, and
    only then reads the next: the backend's connection idles while the client's socket drains,
    and the other way round. Here one thread reads the backend's stream continuously, holding at
    most `read_ahead` bytes (and the chunk being read) the client has not taken, and hands each
    chunk to the event loop without a round trip through the thread pool (which cost as much CPU
    as the copying: on two cores shared with the backend and the client, that CPU is the
    throughput). Only `MAX_DEEP_READ_AHEADS` downloads at once read that far ahead; the others
    hold one chunk ahead. The stream is closed, releasing the backend's connection, by the reading
    thread, when the body ends, fails, or the client goes away.
    """

    def __init__(self, stream: ObjectStream, *, read_ahead: int = READ_AHEAD_BYTES) -> None:
        super().__init__(
            iter(()),
            media_type="application/octet-stream",
            headers={"Content-Length": str(stream.length)},
        )
        self.stream = stream
        self.read_ahead = read_ahead

    async def stream_response(self, send: Send) -> None:
        deep = DEEP_READ_AHEADS.acquire(blocking=False)
        try:
            # A budget of one byte: the thread reads a chunk, then waits until it is taken.
            reader = _ReadAhead(self.stream, self.read_ahead if deep else 1)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                while (chunk := await reader.next()) is not None:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with anyio.CancelScope(shield=True):
                    await reader.stop()
        finally:
            if deep:
                DEEP_READ_AHEADS.release()


class _ReadAhead:
    """A thread reading an `ObjectStream` into a queue on the event loop, `budget` bytes ahead.

    The thread reads the next chunk only while the chunks the loop has not taken hold less than
    `budget` bytes. Errors travel through the queue and are raised by `next()`. `stop()` returns
    once the thread has closed the stream.
    """

    def __init__(self, stream: ObjectStream, budget: int) -> None:
        self._stream = stream
        self._budget = max(budget, 1)
        self._held = 0  # bytes read and not yet taken, guarded by `_room`
        self._stopping = False  # guarded by `_room`
        self._room = threading.Condition()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        threading.Thread(target=self._read, name="lfs-read-ahead", daemon=True).start()

    def _hand_over(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _read(self) -> None:
        chunks = iter(self._stream)
        try:
            while True:
                with self._room:
                    while self._held >= self._budget and not self._stopping:
                        self._room.wait()
                    if self._stopping:
                        return
                chunk = next(chunks, None)
                if chunk is not None:
                    with self._room:
                        self._held += len(chunk)
                self._hand_over(self._queue.put_nowait, chunk)
                if chunk is None:
                    return
        except BaseException as exc:  # handed to the loop, which raises it
            self._hand_over(self._queue.put_nowait, exc)
        finally:
            try:
                chunks.close()  # type: ignore[attr-defined]
                self._stream.close()  # a generator never started has no `finally` to run
            finally:
                self._hand_over(self._set_finished)

    def _set_finished(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    async def next(self) -> bytes | None:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            with self._room:
                self._held -= len(item)
                self._room.notify()
        return item

    async def stop(self) -> None:
        with self._room:
            self._stopping = True
            self._room.notify()
        await self._finished


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
