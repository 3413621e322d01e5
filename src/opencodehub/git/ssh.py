"""Git over SSH: an asyncssh server for git-upload-pack, git-receive-pack, git-upload-archive.

Only public-key authentication is offered. The offered key's SHA256 fingerprint is looked up with
one indexed query and the full key blob compared; the key speaks for its user or, as a deploy
key, for its repository. A session may run exactly one git service on one repository (see
`ssh_commands`); shells, terminals, subsystems and forwarding are refused. The service runs
full-duplex (no `--stateless-rpc`) and the channel is piped to it through asyncio's pipe
transports both ways, with flow control on each side, so data moves in large chunks and a slow
reader on either end holds the other back instead of filling memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hmac
import json
import os
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh import EXTENDED_DATA_STDERR
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.keys import fingerprint_sha256
from opencodehub.accounts.models import AccountKind, SSHKey, User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound
from opencodehub.core.logging import get_logger
from opencodehub.db.engine import Database
from opencodehub.git import heap
from opencodehub.git import process as git_process
from opencodehub.git.commands import GIT_SERVICES, service_argv, service_env, valid_git_protocol
from opencodehub.git.ssh_commands import (
    LFS_AUTHENTICATE,
    SHELL_REFUSAL,
    CommandRefused,
    GitCommand,
    LFSAuthenticateCommand,
    is_lfs_authenticate,
    parse_git_command,
    parse_lfs_authenticate,
)
from opencodehub.lfs import service as lfs
from opencodehub.repos import service as repos
from opencodehub.repos import store
from opencodehub.repos.models import Repository

log = get_logger("opencodehub.ssh")

SERVER_VERSION = "OpenCodeHub"
# (algorithm, generation options, file name) of each host key, kept under `{data}/ssh`.
HOST_KEYS: tuple[tuple[str, dict[str, int], str], ...] = (
    ("ssh-ed25519", {}, "ssh_host_ed25519_key"),
    ("ssh-rsa", {"key_size": 3072}, "ssh_host_rsa_key"),
)

REPOSITORY_NOT_FOUND = "ERROR: Repository not found."
READ_ONLY_DEPLOY_KEY = "ERROR: The key you are authenticating with has been marked as read only."
ARCHIVED = "ERROR: This repository was archived so it is read-only."
INTERNAL_ERROR = "ERROR: The server could not run the command. Try again later."

# A client that stops talking (or vanishes without closing TCP) is dropped after about
# LOGIN_TIMEOUT before authentication, KEEPALIVE_INTERVAL * KEEPALIVE_COUNT_MAX after.
LOGIN_TIMEOUT_SECONDS = 30
KEEPALIVE_INTERVAL_SECONDS = 30
KEEPALIVE_COUNT_MAX = 4
# After a client disconnects, git gets SIGTERM (so receive-pack removes its quarantine
# directory) and, if it is still there this much later, SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0
# git's stdout pipe capacity: the default is 64 KiB; the cap for unprivileged processes 1 MiB.
OUTPUT_PIPE_BYTES = 1024 * 1024
# Each channel's receive window: what a client may send ahead of what git has taken. It bounds
# the memory a push holds in the server to about two windows (one in asyncssh's buffer, one in
# git's stdin transport), whatever the size of the push.
RECEIVE_WINDOW_BYTES = 2 * 1024 * 1024


def host_keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "ssh"


# Host keys --------------------------------------------------------------------------------------


def load_or_create_host_keys(settings: Settings) -> list[asyncssh.SSHKey]:
    """The server's host keys, generated on first start (private files 0600) and reused after.

    Each key is written to a temporary file and hard-linked into place, so a second process
    starting at the same moment either sees the complete file or creates none: both end up
    serving the same key.
    """
    directory = host_keys_dir(settings)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = []
    for algorithm, options, filename in HOST_KEYS:
        path = directory / filename
        if not path.exists():
            _write_new_host_key(path, asyncssh.generate_private_key(algorithm, **options))
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # A host key others can read is no longer a secret of this server.
            log.warning("tightening host key permissions", path=str(path), mode=oct(mode))
            os.chmod(path, 0o600)
        keys.append(asyncssh.read_private_key(path))
    return keys


def _write_new_host_key(path: Path, key: asyncssh.SSHKey) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key("openssh"))
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process created it first; use theirs
    finally:
        os.unlink(temporary)
    public = path.with_name(path.name + ".pub")
    public.write_bytes(key.export_public_key("openssh"))
    os.chmod(public, 0o644)
    log.info("generated ssh host key", path=str(path), fingerprint=key.get_fingerprint("sha256"))


# Authentication ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeyMatch:
    """A stored key whose blob equals the offered one and whose owner may sign in."""

    key_id: int


def _match_key(database: Database, blob: bytes) -> _KeyMatch | None:
    fingerprint = fingerprint_sha256(blob)
    with database.session() as session:
        key = accounts.find_ssh_key_by_fingerprint(session, fingerprint)
        if key is None or not _same_blob(key, blob):
            return None
        if key.repository_id is None:
            user = session.get(User, key.user_id) if key.user_id is not None else None
            if user is None or not user.is_active or user.kind != AccountKind.USER:
                return None
        return _KeyMatch(key.id)


def _same_blob(key: SSHKey, blob: bytes) -> bool:
    """The stored `type base64` must decode to exactly the offered blob: a fingerprint match
    alone would trust SHA-256 to be collision-free for attacker-chosen keys."""
    parts = key.public_key.split()
    if len(parts) < 2:
        return False
    try:
        stored = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        return False
    return hmac.compare_digest(stored, blob)


def _actor_for_key(database: Database, key_id: int) -> Actor | None:
    """Runs once the signature is verified: builds the actor and records the key's use."""
    with database.session() as session:
        key = session.get(SSHKey, key_id)
        if key is None:
            return None
        return accounts.actor_for_ssh_key(session, key)


class _GitSSHServer(asyncssh.SSHServer):
    """One per connection: authenticates the key and hands out sessions."""

    def __init__(self, gateway: _Gateway) -> None:
        self._gateway = gateway
        self._conn: asyncssh.SSHServerConnection | None = None
        self._pending: _KeyMatch | None = None
        self._actor: asyncio.Future[Actor | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._actor.done():
            self._actor.set_result(None)

    def begin_auth(self, username: str) -> bool:
        # Every user name is accepted (git@, the user's own name...): the key alone identifies.
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh calls this for the client's probe and again for the signed request, and
        # verifies the signature right after it returns, with no await in between: the match
        # recorded last is the one that authenticated when auth_completed() runs.
        match = await asyncio.to_thread(_match_key, self._gateway.database, key.public_data)
        self._pending = match
        return match is not None

    async def auth_completed(self) -> None:
        match = self._pending
        actor = None
        if match is not None:
            actor = await asyncio.to_thread(_actor_for_key, self._gateway.database, match.key_id)
        if not self._actor.done():
            self._actor.set_result(actor)
        if actor is None and self._conn is not None:
            # The key or its user went away between the lookup and the signature check.
            self._conn.close()

    async def authenticated_actor(self) -> Actor | None:
        return await self._actor

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _GitSession(self._gateway, self)


# Sessions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Invocation:
    repository_name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path


class _Gateway:
    """What every connection shares: settings, the database, and the tasks still running."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def greeting(self, actor: Actor) -> str:
        if actor.user is not None:
            who = actor.user.username
        else:
            with self.database.session() as session:
                repository = (
                    session.get(Repository, actor.deploy_key_repository_id)
                    if actor.deploy_key_repository_id is not None
                    else None
                )
                who = repository.full_name if repository is not None else "deploy key"
        return (
            f"Hi {who}! You've successfully authenticated, but OpenCodeHub does not provide "
            "shell access."
        )

    def prepare(self, actor: Actor, command: GitCommand, git_protocol: str | None) -> _Invocation:
        """Authorize `command` for `actor` (the same authorize() git over HTTP uses) and build the
        git command line. Raises CommandRefused with the one line the client is shown."""
        with self.database.session() as session:
            try:
                repository = repos.get_for(
                    session, actor, command.owner, command.repo, GIT_SERVICES[command.service]
                )
            except NotFound:
                raise CommandRefused(REPOSITORY_NOT_FOUND) from None
            except Forbidden:
                raise CommandRefused(self._denial(session, actor, command)) from None
            if command.service == "git-receive-pack" and repository.is_archived:
                raise CommandRefused(ARCHIVED)
            repo_path = store.repository_path(self.settings, repository.id)
            if not repo_path.is_dir():
                log.error("repository missing on disk", repository_id=repository.id)
                raise CommandRefused(REPOSITORY_NOT_FOUND)
            return _Invocation(
                repository_name=repository.full_name,
                argv=service_argv(self.settings, command.service, repo_path, stateless_rpc=False),
                env=service_env(
                    self.settings, repository, actor, git_protocol=git_protocol, transport="ssh"
                ),
                cwd=repo_path,
            )

    def lfs_authenticate(self, actor: Actor, command: LFSAuthenticateCommand) -> bytes:
        """The JSON answer to `git-lfs-authenticate`: the LFS API's URL and a short-lived token
        for this actor, repository and operation. Raises CommandRefused as `prepare` does."""
        with self.database.session() as session:
            try:
                answer = lfs.ssh_authenticate(
                    session,
                    self.settings,
                    actor,
                    command.owner,
                    command.repo,
                    "upload" if command.operation == "upload" else "download",
                )
            except NotFound:
                raise CommandRefused(REPOSITORY_NOT_FOUND) from None
            except lfs.ArchivedRepository:
                raise CommandRefused(ARCHIVED) from None
            except Forbidden:
                as_git = GitCommand(LFS_AUTHENTICATE, command.owner, command.repo)
                raise CommandRefused(self._denial(session, actor, as_git)) from None
        return json.dumps(answer).encode() + b"\n"

    @staticmethod
    def _denial(session: Session, actor: Actor, command: GitCommand) -> str:
        if actor.user is None:
            return READ_ONLY_DEPLOY_KEY
        located = repos.locate(session, command.owner, command.repo)
        name = located.repository.full_name if located is not None else command.path
        return f"ERROR: Permission to {name} denied to {actor.user.username}."


class _GitSession(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel: one command, answered by one git process (or a refusal)."""

    def __init__(self, gateway: _Gateway, server: _GitSSHServer) -> None:
        self._gateway = gateway
        self._server = server
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._command: str | None = None
        self._subsystem: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._git: _GitProcess | None = None
        self._early_input: list[bytes] = []
        self._input_eof = False
        self._input_paused = False  # git's stdin is full
        self._pause_scheduled = False
        self._output_paused = False  # the channel's send buffer is full
        self._closed = False
        # Trims the heap every few MiB moved either way (see `git/heap.py`).
        self._meter = heap.TransferMeter()

    # asyncssh callbacks ---------------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(self, *_args: object) -> bool:
        return False  # allow_pty=False already refuses; this keeps it so whatever the options

    def shell_requested(self) -> bool:
        return True  # answered with the greeting and exit status 1, as GitHub does

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self._subsystem = subsystem
        return True  # answered with a one-line refusal, clearer than a failed request

    def session_started(self) -> None:
        self._task = self._gateway.spawn(self._run(), name="ssh-session")

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if datatype is not None:
            return  # clients send no extended data; git reads only stdin
        self._meter.moved(len(data))
        if self._git is not None:
            self._git.write(data)
            return
        # git is not running yet: keep what came and hold the rest back in the channel window.
        assert self._chan is not None
        self._early_input.append(data)
        self._chan.pause_reading()

    def eof_received(self) -> bool:
        self._input_eof = True
        if self._git is not None:
            self._git.write_eof()
        return True  # keep the channel half-open: git still has output to send

    def pause_writing(self) -> None:
        self._output_paused = True
        if self._git is not None:
            self._git.pause_output()

    def resume_writing(self) -> None:
        self._output_paused = False
        if self._git is not None:
            self._git.resume_output()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._git is not None:
            self._git.terminate(self._gateway)
        elif self._task is not None:
            self._task.cancel()

    def break_received(self, msec: int) -> bool:
        return False

    def signal_received(self, signal_name: str) -> None:
        return None  # signals from the client are not forwarded to git

    # The session --------------------------------------------------------------------------------

    def _refuse(self, message: str) -> None:
        assert self._chan is not None
        if not self._closed:
            self._chan.write_stderr(message.encode() + b"\n")
            self._chan.exit(1)

    async def _run(self) -> None:
        assert self._chan is not None
        actor = await self._server.authenticated_actor()
        if actor is None:
            self._chan.close()
            return
        try:
            if self._subsystem is not None:
                self._refuse(SHELL_REFUSAL)
                return
            if self._command is None:
                self._refuse(await asyncio.to_thread(self._gateway.greeting, actor))
                return
            if is_lfs_authenticate(self._command):
                lfs_command = parse_lfs_authenticate(self._command)
                answer = await asyncio.to_thread(self._gateway.lfs_authenticate, actor, lfs_command)
                if not self._closed:
                    self._chan.write(answer)
                    self._chan.exit(0)
                return
            command = parse_git_command(self._command)
            git_protocol = valid_git_protocol(self._chan.get_environment().get("GIT_PROTOCOL"))
            invocation = await asyncio.to_thread(
                self._gateway.prepare, actor, command, git_protocol
            )
        except CommandRefused as refusal:
            log.info(
                "ssh command refused",
                command=(self._command or "")[:200],
                reason=refusal.message,
                **_who(actor),
            )
            self._refuse(refusal.message)
            return
        except Exception:
            log.exception("ssh session failed", command=(self._command or "")[:200])
            self._refuse(INTERNAL_ERROR)
            return
        await self._start_git(actor, command, invocation)

    async def _start_git(self, actor: Actor, command: GitCommand, invocation: _Invocation) -> None:
        assert self._chan is not None
        loop = asyncio.get_running_loop()
        # Pack-generating services wait for a slot, as they do over HTTP (git/process.py).
        limiter = git_process.PACK_PROCESSES if command.service != "git-receive-pack" else None
        if limiter is not None:
            await limiter.acquire()
            if self._closed:
                limiter.release()
                return
        started = time.monotonic()
        try:
            description = {
                "service": command.service,
                "repository": invocation.repository_name,
                **_who(actor),
            }
            _transport, process = await loop.subprocess_exec(
                lambda: _GitProcess(self, description, started),
                *invocation.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=invocation.env,
                cwd=invocation.cwd,
                # Its own process group, so a disconnect stops git and everything it started.
                start_new_session=True,
            )
        except OSError:
            if limiter is not None:
                limiter.release()
            log.exception("could not start git", argv=invocation.argv[0])
            self._refuse(INTERNAL_ERROR)
            return
        if limiter is not None:
            process.on_exit = limiter.release
        self._git = process
        process.enlarge_output_pipe()
        if self._closed:
            process.terminate(self._gateway)
            return
        if self._output_paused:
            process.pause_output()
        for data in self._early_input:
            process.write(data)
        self._early_input.clear()
        if self._input_eof:
            process.write_eof()
        elif not self._input_paused:
            self._chan.resume_reading()

    def git_finished(self, status: int) -> None:
        if self._chan is not None and not self._closed:
            self._chan.exit(status)

    def pause_input(self) -> None:
        """git's stdin is full: stop reading the channel, but only once the current delivery
        is over (see `_apply_input_pause`)."""
        self._input_paused = True
        if not self._pause_scheduled:
            self._pause_scheduled = True
            asyncio.get_running_loop().call_soon(self._apply_input_pause)

    def _apply_input_pause(self) -> None:
        # asyncssh keeps what arrives while a channel is paused in a buffer of its own, and when
        # reading resumes it tops the client's window up to full before delivering the first
        # buffered packet, counting the still-buffered rest as consumed. Pausing again in the
        # middle of that delivery would leave the rest buffered while the client may send a
        # whole new window on top of it; repeated on every pause, this grew the buffer with the
        # size of the push (hundreds of MB for a 1 GB push). Deferred to here, the pause lands
        # after asyncssh has handed over everything it held, so its buffer is empty whenever
        # the window is topped up: at most one window waits there and one window's worth (plus
        # a socket read) waits in git's stdin transport.
        self._pause_scheduled = False
        if self._input_paused and self._chan is not None and not self._closed:
            self._chan.pause_reading()

    def resume_input(self) -> None:
        self._input_paused = False
        if self._chan is not None and not self._closed:
            self._chan.resume_reading()

    def send(self, data: bytes, datatype: int | None) -> None:
        self._meter.moved(len(data))
        if self._chan is not None and not self._closed:
            self._chan.write(data, datatype)


class _GitProcess(asyncio.SubprocessProtocol):
    """The git side of a session: its stdout and stderr go to the channel, the channel's data to
    its stdin; a full pipe pauses the channel and a full channel pauses the pipes."""

    def __init__(
        self, session: _GitSession, description: dict[str, object], started: float
    ) -> None:
        self._session = session
        self._description = description
        self._started = started
        self._transport: asyncio.SubprocessTransport | None = None
        self._finished = asyncio.Event()
        self._terminating = False
        self.on_exit: Callable[[], None] | None = None  # called once, when git is gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    # Channel -> git ---------------------------------------------------------------------------

    def _stdin(self) -> asyncio.WriteTransport | None:
        if self._transport is None:
            return None
        stdin = self._transport.get_pipe_transport(0)
        if stdin is None or stdin.is_closing():
            return None
        return stdin  # type: ignore[return-value]

    def write(self, data: bytes) -> None:
        stdin = self._stdin()
        if stdin is not None:
            stdin.write(data)

    def write_eof(self) -> None:
        stdin = self._stdin()
        if stdin is not None:
            stdin.close()  # flushes what is buffered, then closes git's stdin

    def pause_writing(self) -> None:
        self._session.pause_input()

    def resume_writing(self) -> None:
        # Not from inside this callback: asyncio calls it from the pipe's write handler, and a
        # write plus EOF delivered re-entrantly there makes the pipe close with that write still
        # buffered (the handler sees the close and drops the buffer).
        asyncio.get_running_loop().call_soon(self._session.resume_input)

    # git -> channel -----------------------------------------------------------------------------

    def enlarge_output_pipe(self) -> None:
        """Let git's stdout pipe hold more than the default 64 KiB, so each read takes a larger
        chunk and the channel sends fewer, fuller packets (Linux only; best effort)."""
        if self._transport is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
            return
        stdout = self._transport.get_pipe_transport(1)
        pipe = stdout.get_extra_info("pipe") if stdout is not None else None
        if pipe is None:
            return
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, OUTPUT_PIPE_BYTES)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._session.send(data, EXTENDED_DATA_STDERR if fd == 2 else None)

    def pause_output(self) -> None:
        self._set_output_reading(paused=True)

    def resume_output(self) -> None:
        self._set_output_reading(paused=False)

    def _set_output_reading(self, *, paused: bool) -> None:
        if self._transport is None:
            return
        for fd in (1, 2):
            pipe = self._transport.get_pipe_transport(fd)
            if pipe is None or pipe.is_closing():
                continue
            if paused:
                pipe.pause_reading()  # type: ignore[attr-defined]
            else:
                pipe.resume_reading()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once git has exited and both of its output pipes are drained.
        self._finished.set()
        if self.on_exit is not None:
            on_exit, self.on_exit = self.on_exit, None
            on_exit()
        assert self._transport is not None
        returncode = self._transport.get_returncode()
        status = (
            returncode if returncode is not None and returncode >= 0 else 128 + abs(returncode or 0)
        )
        log.info(
            "ssh git command finished",
            status=status,
            seconds=round(time.monotonic() - self._started, 3),
            disconnected=self._terminating,
            **self._description,
        )
        self._session.git_finished(status)
        self._transport.close()

    # Disconnects ------------------------------------------------------------------------------

    def terminate(self, gateway: _Gateway) -> None:
        """The client went away: stop git and whatever it started, politely first."""
        if self._finished.is_set() or self._terminating or self._transport is None:
            return
        self._terminating = True
        self._signal_group(signal.SIGTERM)
        gateway.spawn(self._kill_after_grace(), name="ssh-git-kill")

    async def _kill_after_grace(self) -> None:
        try:
            await asyncio.wait_for(self._finished.wait(), TERMINATE_GRACE_SECONDS)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        assert self._transport is not None
        pid = self._transport.get_pid()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)


def _who(actor: Actor) -> dict[str, object]:
    if actor.user is not None:
        return {"user": actor.user.username}
    return {"deploy_key_repository_id": actor.deploy_key_repository_id}


# The server -------------------------------------------------------------------------------------


async def start_ssh_server(
    settings: Settings, database: Database, *, sock: socket.socket | None = None
) -> asyncssh.SSHAcceptor:
    """Listen on settings.ssh_host:settings.ssh_port, or on `sock`, a socket already listening
    (`git/ssh_listener.py`); host keys come from `{data}/ssh`."""
    host_keys = await asyncio.to_thread(load_or_create_host_keys, settings)
    gateway = _Gateway(settings, database)
    acceptor = await asyncssh.create_server(
        lambda: _GitSSHServer(gateway),
        "" if sock else settings.ssh_host,
        () if sock else settings.ssh_port,
        sock=sock,
        server_host_keys=host_keys,
        server_version=SERVER_VERSION,
        public_key_auth=True,
        password_auth=False,
        kbdint_auth=False,
        host_based_auth=False,
        gss_host=None,
        allow_pty=False,
        x11_forwarding=False,
        agent_forwarding=False,
        allow_scp=False,
        line_editor=False,
        encoding=None,
        window=RECEIVE_WINDOW_BYTES,
        login_timeout=LOGIN_TIMEOUT_SECONDS,
        keepalive_interval=KEEPALIVE_INTERVAL_SECONDS,
        keepalive_count_max=KEEPALIVE_COUNT_MAX,
        reuse_address=None if sock else True,
    )
    log.info(
        "ssh server started",
        host=settings.ssh_host,
        port=settings.ssh_port,
        fingerprints=[key.get_fingerprint("sha256") for key in host_keys],
    )
    return acceptor
