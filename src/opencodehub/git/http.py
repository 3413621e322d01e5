"""Git smart HTTP transport, answered as raw ASGI before FastAPI routing.

    GET  /{owner}/{repo}(.git)/info/refs?service=git-upload-pack|git-receive-pack
    POST /{owner}/{repo}(.git)/git-upload-pack
    POST /{owner}/{repo}(.git)/git-receive-pack

The request body is fed to `git {upload,receive}-pack --stateless-rpc` as it arrives (gunzipped
when the client compressed it), git's stdin is closed, and only then does the response start and
git's stdout stream out (DESIGN.md's pitfall: once a response streams, `receive()` belongs to
disconnect detection, so the body must be fully read before).

Deadlock: while we are still writing its stdin, git may write to its stdout (receive-pack's
progress and keep-alives, in principle a long negotiation of upload-pack). If nobody read it, a
full pipe would stall git, which would stop reading stdin, which would stall us. So stdout is
drained concurrently into a spool (memory, then a temporary file) until the body is in; the spool
is sent first when the response starts, then stdout streams directly. In practice upload-pack
writes nothing before its input ends, and the spool stays empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencodehub.accounts.actor import Actor
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound, Unauthorized
from opencodehub.core.logging import get_logger
from opencodehub.db.engine import Database
from opencodehub.git import commands, heap, hooks, process
from opencodehub.git.credentials import PasswordCheckCache, actor_for_git
from opencodehub.git.process import GitProcess
from opencodehub.repos import pushes, store
from opencodehub.repos import service as repos

log = get_logger("opencodehub.git.http")

# Owner: GitHub's user-name rule; repository: the repository-name rule, plus an optional `.git`.
_GIT_PATH_RE = re.compile(
    r"\A/(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})"
    r"/(?P<repo>[A-Za-z0-9._-]{1,104})"
    r"/(?P<endpoint>info/refs|git-upload-pack|git-receive-pack)\Z"
)
# Any two-segment path followed by a git endpoint is ours to answer, even when the names are
# malformed, so a bad name gets a git-friendly 404 instead of a web page. Deeper paths (a file
# named `git-upload-pack` shown by the web UI) are not git's.
_GIT_SHAPE_RE = re.compile(r"\A/[^/]+/[^/]+/(?:info/refs|git-upload-pack|git-receive-pack)\Z")
HTTP_SERVICES = ("git-upload-pack", "git-receive-pack")

CHUNK = 64 * 1024
# Pack data out: the larger the chunk, the fewer sends (git's pipe holds up to 1 MiB).
STREAM_CHUNK = 256 * 1024
# Bound on a decompressed upload-pack request (wants and haves): generous for any real client,
# small enough that a gzip bomb only wastes a little CPU.
MAX_UPLOAD_PACK_REQUEST = 64 * 1024 * 1024
SPOOL_MEMORY = 1024 * 1024
REALM = 'Basic realm="OpenCodeHub"'
NO_CACHE_HEADERS = [
    (b"cache-control", b"no-cache, max-age=0, must-revalidate"),
    (b"pragma", b"no-cache"),
    (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"),
]


class _GitHTTPError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.message = message
        self.headers = headers or []
        super().__init__(message)


@dataclass(frozen=True)
class _Authorized:
    """What the request may touch, in plain values (no ORM objects cross threads)."""

    argv: list[str]
    env: dict[str, str]


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


class GitHTTPMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, database: Database) -> None:
        self.app = app
        self.settings = settings
        self.database = database
        self.password_checks = PasswordCheckCache()
        # The stack is built at start-up (lifespan), so the hooks are in place before any push.
        hooks.ensure_hooks(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _GIT_SHAPE_RE.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send)
        except _GitHTTPError as error:
            await _send_text(send, error.status, error.message, error.headers)

    # Request handling ----------------------------------------------------------------------

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _GIT_PATH_RE.match(scope["path"])
        if match is None:
            raise _GitHTTPError(404, "Repository not found.")
        owner, repo_name, endpoint = match["owner"], match["repo"], match["endpoint"]
        repo_name = repos.strip_git_suffix(repo_name)
        method = scope["method"]
        headers = _headers(scope)

        if endpoint == "info/refs":
            if method != "GET":
                raise _GitHTTPError(405, "Method not allowed.", [(b"allow", b"GET")])
            service = _service_from_query(scope.get("query_string", b""))
            advertise = True
        else:
            if method != "POST":
                raise _GitHTTPError(405, "Method not allowed.", [(b"allow", b"POST")])
            service = endpoint
            advertise = False
            expected = f"application/x-{service}-request"
            if headers.get("content-type", "").split(";")[0].strip().lower() != expected:
                raise _GitHTTPError(415, f"Expected Content-Type {expected}.")

        git_protocol = commands.valid_git_protocol(headers.get("git-protocol"))
        authorized = await asyncio.to_thread(
            self._authorize,
            headers.get("authorization"),
            owner,
            repo_name,
            service,
            git_protocol,
            redirect_query=scope.get("query_string", b"").decode("latin-1") if advertise else None,
        )
        if advertise:
            await self._advertise(send, service, authorized, git_protocol)
        elif service == "git-upload-pack":
            # The module attribute is read each time, so tests can swap the limiter.
            async with process.PACK_PROCESSES.slot():
                await self._rpc(scope, receive, send, service, authorized, headers)
        else:
            await self._rpc(scope, receive, send, service, authorized, headers)

    def _authorize(
        self,
        authorization: str | None,
        owner: str,
        repo_name: str,
        service: str,
        git_protocol: str | None,
        *,
        redirect_query: str | None,
    ) -> _Authorized:
        needed = commands.GIT_SERVICES[service]
        with self.database.session() as session:
            try:
                actor = (
                    actor_for_git(session, authorization, self.password_checks)
                    if authorization
                    else Actor.anonymous()
                )
            except Unauthorized as exc:
                raise _GitHTTPError(
                    401, exc.message, [(b"www-authenticate", REALM.encode())]
                ) from None
            located = repos.locate(session, owner, repo_name)
            try:
                if located is None:
                    raise NotFound()
                repos.authorize(session, actor, located.repository, needed)
            except NotFound:
                if actor.is_anonymous:
                    # Ask for credentials: the repository may exist for someone who signs in.
                    raise _GitHTTPError(
                        401, "Authentication required.", [(b"www-authenticate", REALM.encode())]
                    ) from None
                raise _GitHTTPError(404, "Repository not found.") from None
            except Forbidden as exc:
                if actor.is_anonymous:
                    raise _GitHTTPError(
                        401, "Authentication required.", [(b"www-authenticate", REALM.encode())]
                    ) from None
                raise _GitHTTPError(403, exc.message) from None
            repository = located.repository
            if located.redirected and redirect_query is not None:
                location = (
                    f"/{quote(repository.owner.username)}/{quote(repository.name)}.git"
                    f"/info/refs?{redirect_query}"
                )
                raise _GitHTTPError(
                    301,
                    f"Repository moved to {repository.full_name}.",
                    [(b"location", location.encode())],
                )
            if service == "git-receive-pack" and repository.is_archived:
                raise _GitHTTPError(403, pushes.ARCHIVED_MESSAGE)
            repo_path = store.repository_path(self.settings, repository.id)
            argv = commands.service_argv(
                self.settings,
                service,
                repo_path,
                stateless_rpc=True,
                advertise_refs=redirect_query is not None,
            )
            env = commands.service_env(
                self.settings, repository, actor, git_protocol=git_protocol, transport="http"
            )
            return _Authorized(argv, env)

    async def _advertise(
        self, send: Send, service: str, authorized: _Authorized, git_protocol: str | None
    ) -> None:
        git = await _spawn(authorized, stdin=False)
        completed = False
        try:
            await send(_start(200, f"application/x-{service}-advertisement"))
            if not commands.wants_protocol_v2(git_protocol):
                # v0/v1 over HTTP: the client expects this preamble before git's own output.
                await _body(send, pkt_line(f"# service={service}\n") + b"0000")
            await _stream_stdout(git, send)
            completed = True
        finally:
            await _finish(git, completed=completed)

    async def _rpc(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: str,
        authorized: _Authorized,
        headers: dict[str, str],
    ) -> None:
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise _GitHTTPError(415, f"Unsupported Content-Encoding {encoding}.")
        limit = (
            MAX_UPLOAD_PACK_REQUEST
            if service == "git-upload-pack"
            else self.settings.git_max_push_bytes or None
        )
        git = await _spawn(authorized, stdin=True)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
        completed = False
        try:
            drain = asyncio.create_task(_drain_to_spool(git, spool))
            try:
                disconnected = await _feed_body(
                    receive, git, gzip=encoding in ("gzip", "x-gzip"), limit=limit
                )
            finally:
                # Cancelling a pending read loses nothing: StreamReader hands out data only
                # when a read completes.
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
            if disconnected:
                return
            await send(_start(200, f"application/x-{service}-result"))
            spool.seek(0)
            while early := spool.read(CHUNK):
                await _body(send, early)
            await _stream_stdout(git, send)
            completed = True
        finally:
            spool.close()
            await _finish(git, completed=completed)


# Body in ---------------------------------------------------------------------------------------


async def _feed_body(
    receive: Receive,
    git: GitProcess,
    *,
    gzip: bool,
    limit: int | None,
) -> bool:
    """Copy the request body into git's stdin, then close it. True when the client went away."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    # Trims the heap every few MiB of body (see `git/heap.py`).
    meter = heap.TransferMeter()
    fed = 0
    git_gone = False

    async def write(data: bytes) -> None:
        nonlocal fed, git_gone
        fed += len(data)
        if limit is not None and fed > limit:
            raise _GitHTTPError(413, "The request is too large.")
        if git_gone or not data:
            return
        try:
            await git.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # git stopped reading (bad input); it has said why on stdout, which we still send.
            git_gone = True

    more = True
    while more:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return True
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        meter.moved(len(chunk))
        if inflater is None:
            await write(chunk)
            continue
        try:
            data = inflater.decompress(chunk, CHUNK)
            await write(data)
            while inflater.unconsumed_tail:
                await write(inflater.decompress(inflater.unconsumed_tail, CHUNK))
        except zlib.error:
            raise _GitHTTPError(400, "The gzip request body is corrupt.") from None
    if inflater is not None:
        try:
            await write(inflater.flush())
        except zlib.error:
            raise _GitHTTPError(400, "The gzip request body is corrupt.") from None
        if not inflater.eof:
            raise _GitHTTPError(400, "The gzip request body is truncated.")
    git.close_stdin()
    return False


# Body out --------------------------------------------------------------------------------------


async def _spawn(authorized: _Authorized, *, stdin: bool) -> GitProcess:
    return await GitProcess.start(authorized.argv, authorized.env, stdin=stdin)


async def _finish(git: GitProcess, *, completed: bool) -> None:
    returncode = await git.finish(kill=not completed)
    if returncode and completed:
        log.info(
            "git exited with an error",
            returncode=returncode,
            stderr=git.stderr_tail.decode("utf-8", "replace"),
        )


async def _drain_to_spool(git: GitProcess, spool: tempfile.SpooledTemporaryFile[bytes]) -> None:
    while chunk := await git.stdout.read(CHUNK):
        if spool.tell() + len(chunk) > SPOOL_MEMORY:
            # Past the in-memory part the spool is a file: keep disk writes off the loop, and
            # let a started write finish even when the drain is cancelled, so no data is lost.
            write = asyncio.ensure_future(asyncio.to_thread(spool.write, chunk))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await write
                raise
        else:
            spool.write(chunk)


async def _stream_stdout(git: GitProcess, send: Send) -> None:
    meter = heap.TransferMeter()  # a clone's pack out cycles buffers as a push's pack in
    while chunk := await git.stdout.read(STREAM_CHUNK):
        meter.moved(len(chunk))
        await _body(send, chunk)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# ASGI helpers ----------------------------------------------------------------------------------


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }


def _service_from_query(query_string: bytes) -> str:
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("service", [])
    if not values:
        raise _GitHTTPError(403, "The dumb HTTP protocol is not supported; use a newer git.")
    if len(values) != 1 or values[0] not in HTTP_SERVICES:
        raise _GitHTTPError(403, "Unsupported git service.")
    return values[0]


def _start(
    status: int, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> Message:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type.encode()), *NO_CACHE_HEADERS, *(extra or [])],
    }


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _send_text(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = (message + "\n").encode()
    start = _start(
        status,
        "text/plain; charset=utf-8",
        [(b"content-length", str(len(body)).encode()), *headers],
    )
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
