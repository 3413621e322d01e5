"""Git LFS: who may do what, the batch decisions, verified uploads, and locks.

Objects live in object storage at `lfs/{oid[0:2]}/{oid[2:4]}/{oid}` and are recorded once
(`LFSObject`); a repository may download an object only through a `RepositoryLFSObject` link of
its own or of a repository it was forked from, and a link is only made by proving possession of
the content in that repository: an upload whose SHA-256 was checked.

Transfers take one of two paths:

- **Through the app** (the local backend, whose signed URLs are app URLs anyway, backends
  that cannot sign, and every backend with `OCH_LFS_PROXY_TRANSFERS`): the client PUTs to
  `/{owner}/{repo}.git/info/lfs/objects/{oid}` with a transfer token. The body streams into
  `storage.put` for the final key through a reader that hashes it and raises at the end on a
  wrong size or hash; adapters discard a put whose source raises, so a bad or interrupted
  upload leaves nothing visible. The link is made right there.
- **Direct to the backend** (S3, Azure): the client PUTs to a signed URL for a staging key of
  its repository, `lfs/tmp/{repository_id}/{oid}`, never the final key (a client could write
  anything to a signed URL). The `verify` call then checks the staged size with `stat`, streams
  it through the same hashing reader into the final key, deletes the staging object, and only
  then links the object. Staged uploads that are never verified stay under `lfs/tmp/`, which
  nothing serves, until the worker's sweep (`sweep_abandoned_uploads`) removes them an hour
  after their last write.

Downloads are signed GET URLs when the backend can sign and transfers are not proxied, else
app URLs with a transfer token.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import Conflict, Forbidden, NotFound, OCHError
from opencodehub.core.time import isoformat
from opencodehub.lfs import tokens
from opencodehub.lfs.models import LFSLock, LFSObject, RepositoryLFSObject
from opencodehub.lfs.schemas import (
    MAX_ECHOED_OID,
    Action,
    BatchObjectIn,
    BatchObjectOut,
    BatchRequest,
    BatchResponse,
    LockOut,
    LockOwner,
    ObjectError,
)
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository
from opencodehub.storage import ObjectNotFound, StorageAdapter
from opencodehub.storage.base import SignedMethod

OID_RE = re.compile(r"\A[0-9a-f]{64}\Z")
# Lifetime of the actions in a batch answer and of the tokens `git-lfs-authenticate` gives.
ACTION_EXPIRES_SECONDS = 3600
SSH_TOKEN_EXPIRES_SECONDS = 600
# Repositories followed up a fork chain when looking for an object's link.
MAX_FORK_DEPTH = 50
MAX_LOCK_PATH_BYTES = 4096
DEFAULT_LOCK_PAGE = 100
MAX_LOCK_PAGE = 1000
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class LFSError(OCHError):
    """An error with an HTTP status chosen by the service (413, 415, 422...)."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        super().__init__(message)


class ArchivedRepository(Forbidden):
    default_message = "This repository was archived so it is read-only."


class ContentMismatch(Exception):
    """The uploaded bytes are not the object they claim to be."""


class LockExists(Conflict):
    def __init__(self, lock: LFSLock) -> None:
        self.lock = lock
        super().__init__("already created lock")


# Keys and validation ---------------------------------------------------------------------------


def object_key(oid: str) -> str:
    return f"lfs/{oid[0:2]}/{oid[2:4]}/{oid}"


def staging_key(repository_id: int, oid: str) -> str:
    return f"lfs/tmp/{repository_id}/{oid}"


def valid_oid(oid: object) -> bool:
    return isinstance(oid, str) and OID_RE.match(oid) is not None


def _object_problem(settings: Settings, oid: str, size: int) -> ObjectError | None:
    if not valid_oid(oid):
        return ObjectError(code=422, message="Invalid oid: expected 64 lowercase hex digits.")
    if size < 0:
        return ObjectError(code=422, message="Invalid size: must not be negative.")
    if size > settings.lfs_max_object_size:
        return ObjectError(
            code=413,
            message=f"Object is larger than the limit of {settings.lfs_max_object_size} bytes.",
        )
    return None


def check_object(settings: Settings, oid: str, size: int) -> None:
    problem = _object_problem(settings, oid, size)
    if problem is not None:
        raise LFSError(problem.code, problem.message)


# Verified streams ------------------------------------------------------------------------------


def verified(chunks: Iterable[bytes], oid: str, size: int) -> Iterator[bytes]:
    """The chunks, passed on as they come; raises `ContentMismatch` as soon as there are more
    than `size` bytes, and after the last chunk when the size or the SHA-256 is wrong, so the
    consuming `storage.put` discards the upload."""
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise ContentMismatch(f"the upload is longer than the declared {size} bytes")
        digest.update(chunk)
        yield chunk
    if total != size:
        raise ContentMismatch(f"the upload has {total} bytes, not the declared {size}")
    if digest.hexdigest() != oid:
        raise ContentMismatch("the upload's SHA-256 does not match its oid")


# Records ---------------------------------------------------------------------------------------


def _fork_chain(session: Session, repository: Repository) -> list[int]:
    """This repository's id and those of the repositories it was forked from."""
    ids = [repository.id]
    parent_id = repository.fork_parent_id
    while parent_id is not None and parent_id not in ids and len(ids) < MAX_FORK_DEPTH:
        ids.append(parent_id)
        parent_id = session.scalar(
            select(Repository.fork_parent_id).where(Repository.id == parent_id)
        )
    return ids


def linked_object(session: Session, repository: Repository, oid: str) -> LFSObject | None:
    """The object, if this repository (or one it was forked from) may download it."""
    return session.scalar(
        select(LFSObject)
        .join(RepositoryLFSObject, RepositoryLFSObject.oid == LFSObject.oid)
        .where(
            LFSObject.oid == oid,
            RepositoryLFSObject.repository_id.in_(_fork_chain(session, repository)),
        )
        .limit(1)
    )


def _is_linked_here(session: Session, repository_id: int, oid: str) -> bool:
    return (
        session.scalar(
            select(RepositoryLFSObject.id).where(
                RepositoryLFSObject.repository_id == repository_id,
                RepositoryLFSObject.oid == oid,
            )
        )
        is not None
    )


def record_object(session: Session, repository_id: int, oid: str, size: int) -> None:
    """Record a checked object and link it to the repository; idempotent and race-safe."""
    if session.scalar(select(LFSObject.id).where(LFSObject.oid == oid)) is None:
        try:
            with session.begin_nested():
                session.add(LFSObject(oid=oid, size=size))
        except IntegrityError:
            pass  # another upload of the same content recorded it first
    if not _is_linked_here(session, repository_id, oid):
        try:
            with session.begin_nested():
                session.add(RepositoryLFSObject(repository_id=repository_id, oid=oid))
        except IntegrityError:
            pass


@dataclass(frozen=True)
class LFSUsage:
    objects: int
    bytes: int


def repository_lfs_objects(session: Session, repository: Repository) -> LFSUsage:
    """How many LFS objects the repository links, and their bytes (each object counted once;
    objects reached only through the repository it was forked from are not counted)."""
    count, total = session.execute(
        select(func.count(LFSObject.id), func.coalesce(func.sum(LFSObject.size), 0))
        .join(RepositoryLFSObject, RepositoryLFSObject.oid == LFSObject.oid)
        .where(RepositoryLFSObject.repository_id == repository.id)
    ).one()
    return LFSUsage(int(count or 0), int(total or 0))


def repository_lfs_usage(session: Session, repository: Repository) -> int:
    """Bytes of LFS objects linked to the repository (each object counted once)."""
    total = session.scalar(
        select(func.coalesce(func.sum(LFSObject.size), 0))
        .join(RepositoryLFSObject, RepositoryLFSObject.oid == LFSObject.oid)
        .where(RepositoryLFSObject.repository_id == repository.id)
    )
    return int(total or 0)


# Authorization ---------------------------------------------------------------------------------


def actor_from_auth_token(
    session: Session, settings: Settings, token: str
) -> tuple[Actor, int, str]:
    """`(actor, repository id, operation)` of a `git-lfs-authenticate` token; NotFound when the
    token is malformed, forged or expired, or its user is gone or disabled."""
    claims = tokens.read_auth_token(settings.secret, token)
    if claims is None:
        raise NotFound()
    if claims.kind == "user":
        user = session.get(User, claims.user_id) if claims.user_id else None
        if user is None or not user.is_active or user.is_organization:
            raise NotFound()
        return Actor(user=user, method="ssh_key"), claims.repository_id, claims.operation
    actor = Actor(
        user=None,
        method="deploy_key",
        deploy_key_repository_id=claims.repository_id,
        deploy_key_read_only=claims.deploy_key_read_only,
    )
    return actor, claims.repository_id, claims.operation


def ssh_authenticate(
    session: Session,
    settings: Settings,
    actor: Actor,
    owner: str,
    repo_name: str,
    operation: tokens.Operation,
) -> dict[str, object]:
    """The answer to `git-lfs-authenticate owner/repo upload|download`: where the LFS API is and
    a short-lived token for it. Raises NotFound/Forbidden as `repos.get_for` does."""
    needed = Permission.WRITE if operation == "upload" else Permission.READ
    repository = repos.get_for(session, actor, owner, repos.strip_git_suffix(repo_name), needed)
    if operation == "upload" and repository.is_archived:
        raise ArchivedRepository()
    token = tokens.issue_auth_token(
        settings.secret,
        kind="user" if actor.user is not None else "deploy",
        user_id=actor.user_id,
        repository_id=repository.id,
        operation=operation,
        deploy_key_read_only=actor.deploy_key_read_only,
        expires_in=SSH_TOKEN_EXPIRES_SECONDS,
    )
    return {
        "href": lfs_url(settings, repository),
        "header": {"Authorization": f"RemoteAuth {token}"},
        "expires_in": SSH_TOKEN_EXPIRES_SECONDS,
    }


def lfs_url(settings: Settings, repository: Repository) -> str:
    return f"{settings.effective_base_url}/{repository.full_name}.git/info/lfs"


# Batch -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferContext:
    settings: Settings
    storage: StorageAdapter
    repository_id: int
    lfs_url: str


def _proxied(context: TransferContext) -> bool:
    """Whether transfers go through the app's LFS routes rather than a backend URL: always
    with the local backend (its signed URLs are app URLs anyway), and for every backend with
    `OCH_LFS_PROXY_TRANSFERS`."""
    return context.storage.backend == "local" or context.settings.lfs_proxy_transfers


def _token_action(
    context: TransferContext, href: str, oid: str, size: int, method: tokens.TransferMethod
) -> Action:
    token = tokens.issue_transfer_token(
        context.settings.secret,
        repository_id=context.repository_id,
        oid=oid,
        size=size,
        method=method,
        expires_in=ACTION_EXPIRES_SECONDS,
    )
    return Action(
        href=href,
        header={"Authorization": f"RemoteAuth {token}"},
        expires_in=ACTION_EXPIRES_SECONDS,
    )


def _signed_action(context: TransferContext, key: str, method: SignedMethod) -> Action | None:
    if _proxied(context):
        return None
    signed = context.storage.signed_url(key, method, ACTION_EXPIRES_SECONDS)
    if signed is None:
        return None
    return Action(
        href=signed.url,
        header=dict(signed.headers) or None,
        expires_in=ACTION_EXPIRES_SECONDS,
    )


def _download(
    session: Session, context: TransferContext, repository: Repository, obj: BatchObjectIn
) -> BatchObjectOut:
    found = linked_object(session, repository, obj.oid)
    if found is None:
        return BatchObjectOut(
            oid=obj.oid,
            size=obj.size,
            error=ObjectError(code=404, message="Object does not exist."),
        )
    action = _signed_action(context, object_key(obj.oid), "GET") or _token_action(
        context, f"{context.lfs_url}/objects/{obj.oid}", obj.oid, found.size, "GET"
    )
    return BatchObjectOut(
        oid=obj.oid, size=found.size, authenticated=True, actions={"download": action}
    )


def _upload(session: Session, context: TransferContext, obj: BatchObjectIn) -> BatchObjectOut:
    if _is_linked_here(session, context.repository_id, obj.oid):
        return BatchObjectOut(oid=obj.oid, size=obj.size)  # already here: nothing to send
    upload = _signed_action(
        context, staging_key(context.repository_id, obj.oid), "PUT"
    ) or _token_action(context, f"{context.lfs_url}/objects/{obj.oid}", obj.oid, obj.size, "PUT")
    verify = _token_action(
        context, f"{context.lfs_url}/objects/verify", obj.oid, obj.size, "VERIFY"
    )
    return BatchObjectOut(
        oid=obj.oid,
        size=obj.size,
        authenticated=True,
        actions={"upload": upload, "verify": verify},
    )


def batch(
    session: Session,
    settings: Settings,
    storage: StorageAdapter,
    repository: Repository,
    request: BatchRequest,
) -> BatchResponse:
    """The batch answer; the caller has authorized `request.operation` on `repository`."""
    if request.hash_algo != "sha256":
        raise LFSError(409, f"Unsupported hash algorithm {request.hash_algo[:40]!r}: sha256 only.")
    if "basic" not in request.transfers:
        raise LFSError(422, "No supported transfer adapter: only 'basic' is offered.")
    if request.operation == "upload":
        repos.ensure_writable(repository)
    context = TransferContext(settings, storage, repository.id, lfs_url(settings, repository))
    answers = []
    for obj in request.objects:
        problem = _object_problem(settings, obj.oid, obj.size)
        if problem is not None:
            answers.append(
                BatchObjectOut(oid=obj.oid[:MAX_ECHOED_OID], size=obj.size, error=problem)
            )
        elif request.operation == "download":
            answers.append(_download(session, context, repository, obj))
        else:
            answers.append(_upload(session, context, obj))
    return BatchResponse(objects=answers)


# Transfers -------------------------------------------------------------------------------------


def check_transfer_token(
    settings: Settings, token: str | None, repository_id: int, oid: str, method: str
) -> tokens.TransferClaims:
    claims = tokens.read_transfer_token(settings.secret, token) if token else None
    if (
        claims is None
        or claims.repository_id != repository_id
        or claims.oid != oid
        or claims.method != method
    ):
        raise NotFound()
    return claims


def store_upload(storage: StorageAdapter, oid: str, size: int, body: Iterable[bytes]) -> None:
    """Stream a proxied upload into the object's key, checked on the way (blocking). The oid is
    the SHA-256 of the bytes, so it goes along as their payload hash (S3 signs with it instead
    of hashing the body a second time, and checks it on arrival)."""
    storage.put(object_key(oid), verified(body, oid, size), size=size, sha256=oid)


def verify_upload(
    session: Session, storage: StorageAdapter, repository: Repository, oid: str, size: int
) -> None:
    """The `verify` action: the object must be in storage with the declared size. A staged
    direct upload is checked and moved into place first. Only then is the object linked."""
    staged = staging_key(repository.id, oid)
    try:
        staged_info = storage.stat(staged)
    except ObjectNotFound:
        staged_info = None
    if staged_info is not None:
        if staged_info.size != size:
            storage.delete(staged)
            raise LFSError(422, f"The uploaded object has {staged_info.size} bytes, not {size}.")
        try:
            with storage.get(staged) as source:
                checked = verified(source, oid, size)
                storage.put(object_key(oid), checked, size=size, sha256=oid)
        except ContentMismatch as exc:
            raise LFSError(422, f"Verification failed: {exc}.") from None
        finally:
            storage.delete(staged)
        record_object(session, repository.id, oid, size)
        return
    if not _is_linked_here(session, repository.id, oid):
        raise LFSError(404, "Object was not uploaded to this repository.")
    try:
        info = storage.stat(object_key(oid))
    except ObjectNotFound:
        raise LFSError(404, "Object does not exist.") from None
    if info.size != size:
        raise LFSError(422, f"The stored object has {info.size} bytes, not {size}.")


# Clean-up --------------------------------------------------------------------------------------

STAGING_PREFIX = "lfs/tmp/"


def sweep_abandoned_uploads(
    storage: StorageAdapter, older_than: datetime, temp_dir: Path | None = None
) -> int:
    """Delete staged direct uploads (`lfs/tmp/...`) last written before `older_than`: a client
    that never called `verify` left them, and nothing serves or links them. With `temp_dir`
    (the local backend's scratch folder), its files last written before then go too: the
    remains of uploads interrupted in the middle of a write. Returns how many were removed."""
    removed = 0
    for info in list(storage.list(STAGING_PREFIX)):
        if info.modified is None or info.modified >= older_than:
            continue
        try:
            storage.delete(info.key)
        except ObjectNotFound:
            continue
        removed += 1
    if temp_dir is not None:
        cutoff = older_than.timestamp()
        try:
            entries = list(os.scandir(temp_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # finished (renamed into place) or removed meanwhile
    return removed


# Locks -----------------------------------------------------------------------------------------


def validate_lock_path(path: object) -> str:
    """A repository-relative path as git-lfs sends it: `/`-separated, no empty, `.` or `..`
    segment, no control character, at most 4096 bytes. Compared byte for byte."""
    if not isinstance(path, str) or not path:
        raise LFSError(422, "A lock needs a path.")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise LFSError(422, "The path is not valid Unicode.") from None
    if len(encoded) > MAX_LOCK_PATH_BYTES:
        raise LFSError(422, f"The path is longer than {MAX_LOCK_PATH_BYTES} bytes.")
    if _CONTROL_RE.search(path) or "\\" in path:
        raise LFSError(422, "The path contains a control character or a backslash.")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise LFSError(422, "The path must be relative, without empty, '.' or '..' segments.")
    if unicodedata.category(path[0]) == "Zs":
        raise LFSError(422, "The path starts with a space.")
    return path


def _path_hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def lock_json(lock: LFSLock) -> LockOut:
    return LockOut(
        id=str(lock.id),
        path=lock.path,
        locked_at=isoformat(lock.created_at) or "",
        owner=LockOwner(name=lock.owner.username),
    )


def _lock_owner(actor: Actor) -> User:
    if actor.user is None:
        raise Forbidden("Deploy keys cannot hold locks.")
    return actor.user


def create_lock(session: Session, actor: Actor, repository: Repository, path: str) -> LFSLock:
    """Lock `path` for the actor; `LockExists` (409) carries the lock someone already holds.
    The caller has authorized WRITE."""
    owner = _lock_owner(actor)
    repos.ensure_writable(repository)
    path = validate_lock_path(path)
    path_hash = _path_hash(path)
    existing = _lock_by_hash(session, repository.id, path_hash)
    if existing is not None:
        raise LockExists(existing)
    lock = LFSLock(repository_id=repository.id, path=path, path_hash=path_hash, owner_id=owner.id)
    try:
        with session.begin_nested():
            session.add(lock)
    except IntegrityError:
        raced = _lock_by_hash(session, repository.id, path_hash)
        if raced is None:
            raise
        raise LockExists(raced) from None
    session.refresh(lock)
    return lock


def _lock_by_hash(session: Session, repository_id: int, path_hash: str) -> LFSLock | None:
    return session.scalar(
        select(LFSLock).where(
            LFSLock.repository_id == repository_id, LFSLock.path_hash == path_hash
        )
    )


def _small_int(value: object, digits: int) -> int | None:
    """`value` as an int when it is an int or a short string of ASCII digits, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= digits:
        return int(value)
    return None


def _page_args(cursor: str | None, limit: int | str | None) -> tuple[int, int]:
    start = 0 if cursor in (None, "") else _small_int(cursor, 18)
    if start is None:
        raise LFSError(422, "Invalid cursor.")
    size = DEFAULT_LOCK_PAGE if limit in (None, "") else _small_int(limit, 9)
    if size is None or not 1 <= size <= MAX_LOCK_PAGE:
        raise LFSError(422, f"limit must be a number between 1 and {MAX_LOCK_PAGE}.")
    return start, size


def list_locks(
    session: Session,
    repository: Repository,
    *,
    path: str | None = None,
    lock_id: str | None = None,
    cursor: str | None = None,
    limit: int | str | None = None,
) -> tuple[list[LFSLock], str | None]:
    """A page of the repository's locks, oldest first, and the cursor of the next page."""
    start, size = _page_args(cursor, limit)
    query = select(LFSLock).where(LFSLock.repository_id == repository.id, LFSLock.id >= start)
    if path:
        query = query.where(LFSLock.path_hash == _path_hash(validate_lock_path(path)))
    if lock_id:
        wanted = _small_int(lock_id, 18)
        if wanted is None:
            return [], None
        query = query.where(LFSLock.id == wanted)
    rows = list(session.scalars(query.order_by(LFSLock.id).limit(size + 1)))
    next_cursor = str(rows[size].id) if len(rows) > size else None
    return rows[:size], next_cursor


def verify_locks(
    session: Session,
    actor: Actor,
    repository: Repository,
    *,
    cursor: str | None = None,
    limit: int | None = None,
) -> tuple[list[LFSLock], list[LFSLock], str | None]:
    """`(ours, theirs, next cursor)`: the locks the pushing user holds and everyone else's."""
    owner = _lock_owner(actor)
    locks, next_cursor = list_locks(session, repository, cursor=cursor, limit=limit)
    ours = [lock for lock in locks if lock.owner_id == owner.id]
    theirs = [lock for lock in locks if lock.owner_id != owner.id]
    return ours, theirs, next_cursor


def unlock(
    session: Session, actor: Actor, repository: Repository, lock_id: str, *, force: bool
) -> LFSLock:
    """Remove a lock: its owner may; anyone else only with `force` and ADMIN on the repository.
    The caller has authorized WRITE."""
    owner = _lock_owner(actor)
    wanted = _small_int(lock_id, 18)
    lock = None
    if wanted is not None:
        lock = session.scalar(
            select(LFSLock).where(LFSLock.repository_id == repository.id, LFSLock.id == wanted)
        )
    if lock is None:
        raise NotFound("Lock not found.")
    if lock.owner_id != owner.id:
        if not force:
            raise Forbidden(f"The lock is held by {lock.owner.username}; unlock with --force.")
        repos.authorize(session, actor, repository, Permission.ADMIN)
    session.delete(lock)
    session.flush()
    return lock
