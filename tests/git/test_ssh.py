"""Git over SSH, driven by the real `ssh` and `git` clients against the asyncssh server.

The server runs in a background event loop of its own (as `opencodehub ssh` would); tests that
push also run the app (`live_server`), because receive-pack's hooks call it over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest
from sqlalchemy import event, select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import Permission, SSHKey, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.git import heap
from opencodehub.git import process as git_process
from opencodehub.git import ssh as ssh_module
from opencodehub.git.ssh import host_keys_dir
from opencodehub.git.ssh_commands import INVALID_COMMAND, SHELL_REFUSAL
from opencodehub.git.ssh_listener import SSHListener
from opencodehub.repos import store
from opencodehub.repos.models import Collaborator, Repository, RepositoryRedirect
from tests.conftest import free_port
from tests.git.gitutil import (
    CountingTrimmer,
    commit,
    create_repo,
    fsck,
    git_env,
    run_git,
    server_refs,
)

pytestmark = pytest.mark.slow

T = TypeVar("T")

NOT_FOUND = "ERROR: Repository not found."
READ_ONLY_KEY = "ERROR: The key you are authenticating with has been marked as read only."


# The server in a thread -------------------------------------------------------------------------


class BackgroundLoop:
    """An event loop on a thread of its own, as the `opencodehub ssh` process would run it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class SSHServer:
    """The SSH port as `opencodehub serve` opens it: asyncssh loads on the first connection."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.background = BackgroundLoop()
        self.listener: SSHListener | None = None

    def start(self) -> None:
        async def start() -> SSHListener:
            listener = SSHListener(self.settings, self.database)
            await listener.start()
            return listener

        self.listener = self.background.run(start())

    def stop(self) -> None:
        listener = self.listener
        if listener is None:
            return
        self.listener = None

        async def close() -> None:
            listener.close()
            await listener.wait_closed()

        self.background.run(close())

    def shutdown(self) -> None:
        self.stop()
        self.background.stop()


@pytest.fixture
def ssh_server(settings: Settings, db: Database) -> Iterator[SSHServer]:
    server = SSHServer(settings, db)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


# Clients ----------------------------------------------------------------------------------------


@dataclass
class SSHClient:
    """One client identity (a private key) and the commands that use it."""

    key: Path
    public_key: str
    port: int
    home: Path

    @property
    def ssh_options(self) -> list[str]:
        return [
            "-F",
            "/dev/null",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]

    @property
    def ssh_command(self) -> str:
        return " ".join(["ssh", *self.ssh_options])

    def url(self, owner: str, repo: str) -> str:
        return f"ssh://git@127.0.0.1:{self.port}/{owner}/{repo}.git"

    def git(
        self, *args: str, cwd: Path, check: bool = True, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return run_git(
            *args, cwd=cwd, home=self.home, check=check, GIT_SSH_COMMAND=self.ssh_command, **extra
        )

    def ssh(
        self, *args: str, options: tuple[str, ...] = (), stdin: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ssh", *self.ssh_options, *options, "git@127.0.0.1", *args],
            input=stdin,
            capture_output=True,
            timeout=60,
            env=git_env(self.home),
            check=False,
        )


@pytest.fixture
def make_client(settings: Settings, tmp_path: Path) -> Callable[[str], SSHClient]:
    def make(name: str, key_type: str = "ed25519") -> SSHClient:
        directory = tmp_path / "keys"
        directory.mkdir(exist_ok=True)
        key = directory / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"{name}@test", "-f", str(key)],
            check=True,
            capture_output=True,
        )
        return SSHClient(
            key=key,
            public_key=key.with_suffix(".pub").read_text(),
            port=settings.ssh_port,
            home=tmp_path / "home",
        )

    return make


def add_user_key(db: Database, user: User, client: SSHClient) -> SSHKey:
    with db.session() as session:
        owner = session.get(User, user.id)
        assert owner is not None
        return accounts.add_ssh_key(session, owner, "laptop", client.public_key)


def add_deploy_key(
    db: Database, repository: Repository, client: SSHClient, read_only: bool
) -> None:
    with db.session() as session:
        repo = session.get(Repository, repository.id)
        assert repo is not None
        accounts.add_deploy_key(session, repo, "deploy", client.public_key, read_only=read_only)


def add_collaborator(
    db: Database, repository: Repository, user: User, permission: Permission
) -> None:
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repository.id, user_id=user.id, permission=permission)
        )


def last_line(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class World:
    alice: User
    bob: User
    alice_client: SSHClient
    bob_client: SSHClient
    public: Repository
    private: Repository


@pytest.fixture
def world(
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_client: Callable[..., SSHClient],
    ssh_server: SSHServer,
) -> World:
    alice = make_user("alice")
    bob = make_user("bob")
    alice_client = make_client("alice")
    bob_client = make_client("bob")
    add_user_key(db, alice, alice_client)
    add_user_key(db, bob, bob_client)
    public = create_repo(db, settings, alice, "hello", auto_init=True)
    private = create_repo(db, settings, alice, "secret", private=True, auto_init=True)
    return World(alice, bob, alice_client, bob_client, public, private)


def uses_protocol_v2(trace: str) -> bool:
    """Whether a GIT_TRACE_PACKET trace shows the server speaking protocol v2."""
    return re.search(r"packet: +[a-z-]+< version 2$", trace, re.MULTILINE) is not None


# Clone, fetch, push -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_clone_push_fetch(
    world: World, live_server: object, settings: Settings, tmp_path: Path, protocol: str
) -> None:
    client = world.alice_client
    clone = tmp_path / "clone"
    result = client.git(
        "-c",
        f"protocol.version={protocol}",
        "clone",
        client.url("alice", "hello"),
        str(clone),
        cwd=tmp_path,
        GIT_TRACE_PACKET="1",
    )
    assert uses_protocol_v2(result.stderr) == (protocol == "2")
    assert (clone / "README.md").read_text() == "# hello\n"

    sha = commit(clone, client.home, {"src/app.py": "print('hi')\n"}, "Add app")
    client.git("-c", f"protocol.version={protocol}", "push", "origin", "main", cwd=clone)
    assert server_refs(settings, world.public.id)["refs/heads/main"] == sha
    fsck(settings, world.public.id, client.home)

    # A second clone (bob's, public repository) fetches the new commit.
    other = tmp_path / "other"
    world.bob_client.git("clone", world.bob_client.url("alice", "hello"), str(other), cwd=tmp_path)
    sha2 = commit(clone, client.home, {"b.txt": "b"}, "Second")
    client.git("push", "-q", "origin", "main", cwd=clone)
    fetched = world.bob_client.git(
        "-c", f"protocol.version={protocol}", "fetch", "origin", cwd=other, GIT_TRACE_PACKET="1"
    )
    assert uses_protocol_v2(fetched.stderr) == (protocol == "2")
    assert run_git("rev-parse", "origin/main", cwd=other, home=client.home).stdout.strip() == sha2


def test_url_forms(world: World, tmp_path: Path) -> None:
    """scp-like (no leading slash), without .git, and case-insensitive names all work."""
    client = world.alice_client
    for index, url in enumerate(
        [
            "git@127.0.0.1:alice/hello.git",
            "git@127.0.0.1:alice/hello",
            f"ssh://git@127.0.0.1:{client.port}/alice/hello",
            f"ssh://git@127.0.0.1:{client.port}/ALICE/Hello.git",
            f"ssh://someone-else@127.0.0.1:{client.port}/alice/hello.git",
        ]
    ):
        target = tmp_path / f"clone{index}"
        client.git("clone", "-q", url, str(target), cwd=tmp_path)
        assert (target / "README.md").exists()


def test_push_new_branch_and_tag_then_delete(
    world: World, live_server: object, settings: Settings, tmp_path: Path
) -> None:
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "hello"), str(clone), cwd=tmp_path)
    client.git("checkout", "-q", "-b", "feature", cwd=clone)
    sha = commit(clone, client.home, {"f.txt": "feature"}, "Feature")
    client.git("tag", "v1.0", cwd=clone)
    client.git("push", "-q", "origin", "feature", "v1.0", cwd=clone)
    refs = server_refs(settings, world.public.id)
    assert refs["refs/heads/feature"] == sha
    assert refs["refs/tags/v1.0"] == sha
    client.git("push", "-q", "origin", "--delete", "feature", cwd=clone)
    assert "refs/heads/feature" not in server_refs(settings, world.public.id)


def test_shallow_clone(world: World, live_server: object, tmp_path: Path) -> None:
    client = world.alice_client
    full = tmp_path / "full"
    client.git("clone", "-q", client.url("alice", "hello"), str(full), cwd=tmp_path)
    for number in range(3):
        commit(full, client.home, {"n.txt": str(number)}, f"Commit {number}")
    client.git("push", "-q", "origin", "main", cwd=full)

    for protocol in ("0", "2"):
        shallow = tmp_path / f"shallow{protocol}"
        client.git(
            "-c",
            f"protocol.version={protocol}",
            "clone",
            "-q",
            "--depth",
            "1",
            client.url("alice", "hello"),
            str(shallow),
            cwd=tmp_path,
        )
        count = client.git("rev-list", "--count", "HEAD", cwd=shallow).stdout.strip()
        assert count == "1"
        assert (shallow / ".git" / "shallow").exists()
        client.git("fetch", "-q", "--deepen", "2", cwd=shallow)
        assert client.git("rev-list", "--count", "HEAD", cwd=shallow).stdout.strip() == "3"


def test_archive_remote(world: World, tmp_path: Path) -> None:
    client = world.alice_client
    archive = tmp_path / "hello.tar"
    client.git(
        "archive",
        f"--remote={client.url('alice', 'hello')}",
        "--format=tar",
        "-o",
        str(archive),
        "HEAD",
        cwd=tmp_path,
    )
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["README.md"]
        member = tar.extractfile("README.md")
        assert member is not None
        assert member.read() == b"# hello\n"

    # upload-archive is a read: private repositories are hidden from others.
    refused = world.bob_client.git(
        "archive", f"--remote={client.url('alice', 'secret')}", "HEAD", cwd=tmp_path, check=False
    )
    assert refused.returncode != 0
    assert NOT_FOUND in refused.stderr


def test_exit_status_and_raw_protocol(world: World) -> None:
    """The git process's exit status reaches the client; its output arrives unmodified."""
    client = world.alice_client
    result = client.ssh("git-upload-pack 'alice/hello.git'", stdin=b"0000")
    assert result.returncode == 0, result.stderr
    assert b"refs/heads/main" in result.stdout
    assert result.stdout.endswith(b"0000")

    # A malformed request: upload-pack itself fails (128) and says why on stderr.
    garbage = client.ssh("git-upload-pack 'alice/hello.git'", stdin=b"zzzzgarbage")
    assert garbage.returncode == 128
    assert b"protocol error" in garbage.stderr


# Authorization ----------------------------------------------------------------------------------


def test_private_repository_is_not_found_for_others(world: World, tmp_path: Path) -> None:
    bob = world.bob_client
    hidden = bob.git(
        "clone", bob.url("alice", "secret"), str(tmp_path / "a"), cwd=tmp_path, check=False
    )
    missing = bob.git(
        "clone", bob.url("alice", "nothing"), str(tmp_path / "b"), cwd=tmp_path, check=False
    )
    assert hidden.returncode == missing.returncode == 128
    assert NOT_FOUND in hidden.stderr.splitlines()
    # Identical to a repository that does not exist: existence does not leak.
    hidden_text = hidden.stderr.replace("secret", "X").replace(str(tmp_path / "a"), "T")
    missing_text = missing.stderr.replace("nothing", "X").replace(str(tmp_path / "b"), "T")
    assert hidden_text == missing_text

    direct = bob.ssh("git-upload-pack 'alice/secret.git'")
    assert direct.returncode == 1
    assert direct.stderr.decode() == NOT_FOUND + "\n"
    assert direct.stdout == b""

    # The owner clones it.
    owner = world.alice_client
    owner.git("clone", "-q", owner.url("alice", "secret"), str(tmp_path / "c"), cwd=tmp_path)


def test_read_collaborator_cannot_push(
    world: World, db: Database, live_server: object, settings: Settings, tmp_path: Path
) -> None:
    add_collaborator(db, world.private, world.bob, Permission.READ)
    bob = world.bob_client
    clone = tmp_path / "clone"
    bob.git("clone", "-q", bob.url("alice", "secret"), str(clone), cwd=tmp_path)
    before = server_refs(settings, world.private.id)
    commit(clone, bob.home, {"x.txt": "x"}, "Bob's change")
    pushed = bob.git("push", "origin", "main", cwd=clone, check=False)
    assert pushed.returncode != 0
    assert "ERROR: Permission to alice/secret denied to bob." in pushed.stderr.splitlines()
    assert server_refs(settings, world.private.id) == before

    direct = bob.ssh("git-receive-pack '/alice/secret.git'")
    assert (direct.returncode, direct.stderr) == (
        1,
        b"ERROR: Permission to alice/secret denied to bob.\n",
    )


def test_write_collaborator_pushes(
    world: World, db: Database, live_server: object, settings: Settings, tmp_path: Path
) -> None:
    add_collaborator(db, world.private, world.bob, Permission.WRITE)
    bob = world.bob_client
    clone = tmp_path / "clone"
    bob.git("clone", "-q", bob.url("alice", "secret"), str(clone), cwd=tmp_path)
    sha = commit(clone, bob.home, {"x.txt": "x"}, "Bob's change")
    bob.git("push", "-q", "origin", "main", cwd=clone)
    assert server_refs(settings, world.private.id)["refs/heads/main"] == sha


def test_push_to_public_repository_of_someone_else_is_denied(world: World) -> None:
    result = world.bob_client.ssh("git-receive-pack 'alice/hello.git'")
    assert (result.returncode, result.stderr) == (
        1,
        b"ERROR: Permission to alice/hello denied to bob.\n",
    )


def test_archived_repository_refuses_pushes(world: World, db: Database, tmp_path: Path) -> None:
    with db.session() as session:
        repo = session.get(Repository, world.public.id)
        assert repo is not None
        repo.is_archived = True
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "hello"), str(clone), cwd=tmp_path)
    commit(clone, client.home, {"x.txt": "x"}, "Change")
    pushed = client.git("push", "origin", "main", cwd=clone, check=False)
    assert pushed.returncode != 0
    assert "ERROR: This repository was archived so it is read-only." in pushed.stderr


def test_renamed_repository_is_reached_through_its_redirect(
    world: World, db: Database, tmp_path: Path
) -> None:
    with db.session() as session:
        session.add(
            RepositoryRedirect(
                owner_id=world.alice.id, lower_name="old-name", repository_id=world.public.id
            )
        )
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "old-name"), str(clone), cwd=tmp_path)
    assert (clone / "README.md").read_text() == "# hello\n"


# Deploy keys ------------------------------------------------------------------------------------


def test_read_only_deploy_key(
    world: World,
    db: Database,
    make_client: Callable[..., SSHClient],
    live_server: object,
    settings: Settings,
    tmp_path: Path,
) -> None:
    deploy = make_client("deploy-ro")
    add_deploy_key(db, world.private, deploy, read_only=True)
    clone = tmp_path / "clone"
    deploy.git("clone", "-q", deploy.url("alice", "secret"), str(clone), cwd=tmp_path)
    before = server_refs(settings, world.private.id)
    commit(clone, deploy.home, {"d.txt": "d"}, "Deploy change")
    pushed = deploy.git("push", "origin", "main", cwd=clone, check=False)
    assert pushed.returncode != 0
    assert READ_ONLY_KEY in pushed.stderr.splitlines()
    assert server_refs(settings, world.private.id) == before

    greeting = deploy.ssh()
    assert greeting.returncode == 1
    assert greeting.stderr.decode() == (
        "Hi alice/secret! You've successfully authenticated, but OpenCodeHub does not provide "
        "shell access.\n"
    )


def test_read_write_deploy_key(
    world: World,
    db: Database,
    make_client: Callable[..., SSHClient],
    live_server: object,
    settings: Settings,
    tmp_path: Path,
) -> None:
    deploy = make_client("deploy-rw")
    add_deploy_key(db, world.private, deploy, read_only=False)
    clone = tmp_path / "clone"
    deploy.git("clone", "-q", deploy.url("alice", "secret"), str(clone), cwd=tmp_path)
    sha = commit(clone, deploy.home, {"d.txt": "d"}, "Deploy change")
    deploy.git("push", "-q", "origin", "main", cwd=clone)
    assert server_refs(settings, world.private.id)["refs/heads/main"] == sha


def test_deploy_key_reaches_only_its_repository(
    world: World,
    db: Database,
    settings: Settings,
    make_client: Callable[..., SSHClient],
    tmp_path: Path,
) -> None:
    deploy = make_client("deploy-other")
    add_deploy_key(db, world.public, deploy, read_only=False)
    create_repo(db, settings, world.alice, "other", auto_init=True)
    result = deploy.git(
        "clone", deploy.url("alice", "secret"), str(tmp_path / "x"), cwd=tmp_path, check=False
    )
    assert result.returncode == 128
    assert NOT_FOUND in result.stderr.splitlines()
    # A deploy key sees its own repository only, even among public ones.
    denied = deploy.ssh("git-receive-pack 'alice/other.git'")
    assert (denied.returncode, denied.stderr.decode()) == (1, NOT_FOUND + "\n")
    # Its own repository: fine.
    allowed = deploy.ssh("git-receive-pack 'alice/hello.git'", stdin=b"0000")
    assert allowed.returncode == 0, allowed.stderr


# Authentication ---------------------------------------------------------------------------------


def test_unknown_key_is_refused_at_authentication(
    world: World, make_client: Callable[..., SSHClient]
) -> None:
    stranger = make_client("stranger")
    result = stranger.ssh("git-upload-pack 'alice/hello.git'")
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_inactive_user_is_refused(world: World, db: Database) -> None:
    with db.session() as session:
        user = session.get(User, world.bob.id)
        assert user is not None
        user.is_active = False
    result = world.bob_client.ssh("git-upload-pack 'alice/hello.git'")
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_rsa_keys_work_and_last_used_is_recorded(
    world: World, db: Database, make_client: Callable[..., SSHClient]
) -> None:
    client = make_client("alice-rsa", key_type="rsa")
    key = add_user_key(db, world.alice, client)
    assert key.last_used_at is None
    greeting = client.ssh()
    assert greeting.returncode == 1
    assert greeting.stderr.decode().startswith("Hi alice! ")
    with db.session() as session:
        stored = session.get(SSHKey, key.id)
        assert stored is not None
        assert stored.last_used_at is not None


def test_key_with_tampered_blob_is_refused(
    world: World, db: Database, make_client: Callable[..., SSHClient]
) -> None:
    """The fingerprint is only the index: the stored key itself must equal the offered one."""
    client = make_client("mallory")
    key = add_user_key(db, world.bob, client)
    other = make_client("other")
    with db.session() as session:
        stored = session.get(SSHKey, key.id)
        assert stored is not None
        stored.public_key = " ".join(other.public_key.split()[:2])
    result = client.ssh()
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_password_and_keyboard_interactive_are_not_offered(world: World) -> None:
    result = subprocess.run(
        [
            "ssh",
            *world.alice_client.ssh_options[:2],  # -F /dev/null
            "-p",
            str(world.alice_client.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "git@127.0.0.1",
        ],
        capture_output=True,
        timeout=30,
        env=git_env(world.alice_client.home),
        check=False,
    )
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr


def test_key_lookup_is_by_fingerprint_never_a_scan(
    world: World, db: Database, make_client: Callable[..., SSHClient]
) -> None:
    """Each authentication attempt reads ssh_keys by its unique fingerprint (or the matched key
    by id), and the fingerprint is the one ssh-keygen prints."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "ssh_keys" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append(" ".join(statement.split()))

    for index in range(5):  # a few keys that must not be read
        add_user_key(db, world.bob, make_client(f"extra{index}"))
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert world.alice_client.ssh().returncode == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert statements
    for statement in statements:
        assert "WHERE ssh_keys.fingerprint =" in statement or "WHERE ssh_keys.id =" in statement
    assert SSHKey.__table__.c.fingerprint.unique

    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{world.alice_client.key}.pub"],
        capture_output=True,
        check=True,
        text=True,
    )
    with db.session() as session:
        stored = session.scalars(select(SSHKey.fingerprint).where(SSHKey.user_id == world.alice.id))
        assert list(stored) == [listed.stdout.split()[1]]


# What is refused --------------------------------------------------------------------------------


def test_greeting_without_command(world: World) -> None:
    result = world.alice_client.ssh()
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == (
        "Hi alice! You've successfully authenticated, but OpenCodeHub does not provide shell "
        "access.\n"
    )


def test_pty_is_refused(world: World) -> None:
    # -tt forces the request; OpenSSH treats a refused forced terminal as fatal (255).
    result = world.alice_client.ssh(options=("-tt",))
    assert result.returncode == 255
    assert result.stdout == b""
    assert b"PTY allocation request failed" in result.stderr
    # With a command as well: still no terminal, and nothing runs.
    with_command = world.alice_client.ssh("git-upload-pack 'alice/hello.git'", options=("-tt",))
    assert with_command.returncode == 255
    assert b"PTY allocation request failed" in with_command.stderr
    assert b"refs/heads/main" not in with_command.stdout


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("ls", SHELL_REFUSAL),
        ("sh -c id", SHELL_REFUSAL),
        ("git-upload-pack 'alice/hello.git'; rm -rf /", INVALID_COMMAND),
        ("git-upload-pack 'alice/hello.git' && touch /tmp/och-pwned", INVALID_COMMAND),
        ("git-upload-pack `touch /tmp/och-pwned`", INVALID_COMMAND),
        ("git-upload-pack 'alice/`touch /tmp/och-pwned`.git'", INVALID_COMMAND),
        ("git-upload-pack $(touch /tmp/och-pwned)", INVALID_COMMAND),
        ("git-upload-pack 'alice/hello.git' 'alice/secret.git'", INVALID_COMMAND),
        ("git-upload-pack 'alice/hello.git' --help", INVALID_COMMAND),
        ("git-upload-pack 'alice/hello.git", INVALID_COMMAND),
        ("git-upload-pack '../x'", INVALID_COMMAND),
        ("git-upload-pack 'alice/../alice/hello.git'", INVALID_COMMAND),
        ("git-upload-pack '-alice/hello.git'", INVALID_COMMAND),
        ("git-upload-pack 'alice/hello.git'\nid", INVALID_COMMAND),
        ("git-upload-pack 'alice/" + "x" * 10_000 + ".git'", INVALID_COMMAND),
    ],
)
def test_commands_are_refused(world: World, command: str, message: str) -> None:
    result = world.alice_client.ssh(command)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == message + "\n"
    assert not Path("/tmp/och-pwned").exists()


def test_sftp_subsystem_is_refused(world: World) -> None:
    result = world.alice_client.ssh("sftp", options=("-s",))
    assert result.returncode == 1
    assert result.stderr.decode() == SHELL_REFUSAL + "\n"


def test_forwarding_is_refused(world: World) -> None:
    client = world.alice_client
    # Remote forwarding (tcpip-forward): the server declines the listener.
    remote = client.ssh(
        options=(
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            f"127.0.0.1:{free_port()}:127.0.0.1:9",
        )
    )
    assert remote.returncode == 255
    assert b"remote port forwarding failed" in remote.stderr
    # Direct connections (direct-tcpip, as -W and -L use): refused.
    direct = client.ssh(options=("-W", f"127.0.0.1:{client.port}"))
    assert direct.returncode == 255
    assert b"stdio forwarding failed" in direct.stderr


def test_only_git_protocol_is_taken_from_the_environment(world: World, tmp_path: Path) -> None:
    """Variables a client sends other than GIT_PROTOCOL never reach git."""
    client = world.alice_client
    decoy = tmp_path / "decoy.git"
    run_git("init", "-q", "--bare", str(decoy), cwd=tmp_path, home=client.home)
    result = client.ssh(
        "git-upload-pack 'alice/hello.git'",
        options=(
            "-o",
            f"SetEnv=GIT_DIR={decoy} GIT_CONFIG_PARAMETERS='core.hooksPath=/tmp' LD_PRELOAD=/x.so",
        ),
        stdin=b"0000",
    )
    assert result.returncode == 0, result.stderr
    assert b"refs/heads/main" in result.stdout
    # An invalid protocol value is dropped: the server falls back to protocol v0.
    bogus = client.ssh(
        "git-upload-pack 'alice/hello.git'",
        options=("-o", "SetEnv=GIT_PROTOCOL=version=2;id"),
        stdin=b"0000",
    )
    assert bogus.returncode == 0, bogus.stderr
    assert b"refs/heads/main" in bogus.stdout
    v2 = client.ssh(
        "git-upload-pack 'alice/hello.git'",
        options=("-o", "SetEnv=GIT_PROTOCOL=version=2"),
        stdin=b"0000",
    )
    assert v2.returncode == 0, v2.stderr
    assert v2.stdout.startswith(b"000eversion 2\n")


# Streams and lifecycle --------------------------------------------------------------------------


def _git_processes_for(path: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and b"ssh" not in cmdline:
            found.append(int(entry))
    return found


def test_client_disconnect_stops_git(world: World, settings: Settings) -> None:
    client = world.alice_client
    repo_path = store.repository_path(settings, world.public.id)
    process = subprocess.Popen(
        ["ssh", *client.ssh_options, "git@127.0.0.1", "git-receive-pack 'alice/hello.git'"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=git_env(client.home),
    )
    try:
        assert process.stdout is not None
        first = process.stdout.read(4)  # the advertisement has begun: receive-pack is running
        assert first
        assert _git_processes_for(repo_path)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _git_processes_for(repo_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _git_processes_for(repo_path) == []
    finally:
        if process.poll() is None:
            process.kill()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_large_push_and_clone_stream(
    world: World, live_server: object, settings: Settings, tmp_path: Path
) -> None:
    """Several megabytes both ways, through the flow control on each side."""
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "hello"), str(clone), cwd=tmp_path)
    payload = os.urandom(6 * 1024 * 1024)
    sha = commit(clone, client.home, {"blob.bin": payload}, "Big blob")
    client.git("push", "-q", "origin", "main", cwd=clone)
    assert server_refs(settings, world.public.id)["refs/heads/main"] == sha
    again = tmp_path / "again"
    client.git("clone", "-q", client.url("alice", "hello"), str(again), cwd=tmp_path)
    assert (again / "blob.bin").read_bytes() == payload


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/self/status")


def test_large_push_keeps_server_memory_bounded(
    world: World, live_server: object, settings: Settings, tmp_path: Path
) -> None:
    """A 300 MB push streams through the server (this process) with bounded buffers: the peak
    resident size grows by far less than the push. Before the fix, asyncssh's receive buffer
    grew with the push (about half of it stayed buffered at the peak)."""
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "hello"), str(clone), cwd=tmp_path)
    # 300 incompressible 1 MB files, written by fast-import straight into one pack that the
    # push sends as it is: the client keeps up with the connection and the server's side is the
    # slower one, which is what made the old code buffer.
    parent = client.git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    importer = subprocess.Popen(
        ["git", "-c", "core.compression=0", "-c", "pack.compression=0", "fast-import", "--quiet"],
        cwd=clone,
        env=git_env(client.home),
        stdin=subprocess.PIPE,
    )
    assert importer.stdin is not None
    message = b"300 MB"
    importer.stdin.write(
        b"commit refs/heads/main\ncommitter T <t@example.com> 1700000000 +0000\n"
        + f"data {len(message)}\n".encode()
        + message
        + f"\nfrom {parent}\n".encode()
    )
    for index in range(300):
        importer.stdin.write(f"M 100644 inline blobs/{index:03}.bin\ndata 1048576\n".encode())
        importer.stdin.write(os.urandom(1024 * 1024))
        importer.stdin.write(b"\n")
    importer.stdin.close()
    assert importer.wait(timeout=300) == 0
    sha = client.git("rev-parse", "main", cwd=clone).stdout.strip()

    # Writing 5 to clear_refs resets the peak (VmHWM) to the current size.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    client.git("push", "-q", "origin", "main", cwd=clone)
    growth_mb = (_status_kb("VmHWM") - before) / 1024

    assert server_refs(settings, world.public.id)["refs/heads/main"] == sha
    assert growth_mb < 100, f"peak RSS grew by {growth_mb:.0f} MB during a 300 MB push"


def test_push_never_buffers_more_than_a_window_for_git(
    world: World,
    live_server: object,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What waits in the server for git's stdin stays within the channel's receive window,
    however large the push: the client is held back by the window, not the server's memory."""
    buffered: list[int] = []
    write = ssh_module._GitProcess.write

    def recording_write(self: ssh_module._GitProcess, data: bytes) -> None:
        write(self, data)
        stdin = self._stdin()
        if stdin is not None:
            buffered.append(stdin.get_write_buffer_size())

    monkeypatch.setattr(ssh_module._GitProcess, "write", recording_write)
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "hello"), str(clone), cwd=tmp_path)
    # 32 incompressible 1 MB files in one commit: sixteen windows' worth.
    for index in range(32):
        (clone / f"blob{index:02}.bin").write_bytes(os.urandom(1024 * 1024))
    client.git("add", ".", cwd=clone)
    client.git("-c", "core.compression=0", "commit", "-q", "-m", "32 MB", cwd=clone)
    sha = client.git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    client.git("-c", "pack.compression=0", "push", "-q", "origin", "main", cwd=clone)

    assert server_refs(settings, world.public.id)["refs/heads/main"] == sha
    assert any(size > 0 for size in buffered), "git's stdin never filled up"
    limit = 2 * ssh_module.RECEIVE_WINDOW_BYTES
    assert max(buffered) <= limit, f"{max(buffered)} bytes waited for git's stdin"


def test_transfers_trim_the_heap_as_they_move(
    world: World,
    live_server: object,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A push and a clone over SSH ask for a heap trim every TRIM_EVERY_BYTES moved (see
    `git/heap.py`), so that a long transfer cannot fault the heap's handed-back pages in."""
    trimmer = CountingTrimmer()
    monkeypatch.setattr(heap, "HEAP_TRIMMER", trimmer)
    monkeypatch.setattr(heap, "TRIM_EVERY_BYTES", 1024 * 1024)
    client = world.alice_client
    clone = tmp_path / "clone"
    client.git("clone", "-q", client.url("alice", "hello"), str(clone), cwd=tmp_path)
    noise = {f"noise{index}.bin": os.urandom(1024 * 1024) for index in range(8)}
    sha = commit(clone, client.home, noise, "8 MB of noise")
    trimmer.requests = 0
    client.git("push", "-q", "origin", "main", cwd=clone)
    assert server_refs(settings, world.public.id)["refs/heads/main"] == sha
    pushed = trimmer.requests
    assert pushed >= 7, f"{pushed} trims for an 8 MB push"

    again = tmp_path / "again"
    client.git("clone", "-q", "--bare", client.url("alice", "hello"), str(again), cwd=tmp_path)
    assert client.git("rev-parse", "main", cwd=again).stdout.strip() == sha
    assert trimmer.requests - pushed >= 7, f"{trimmer.requests - pushed} trims for the clone"


def test_concurrent_clones_wait_for_a_pack_process_slot(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = git_process.ProcessLimiter(1)
    monkeypatch.setattr(git_process, "PACK_PROCESSES", limiter)
    client = world.alice_client
    clones = [tmp_path / f"clone{index}" for index in range(3)]
    procs = [
        subprocess.Popen(
            ["git", "clone", "-q", client.url("alice", "hello"), str(path)],
            env=git_env(client.home, GIT_SSH_COMMAND=client.ssh_command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in clones
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], results
    assert all((path / "README.md").read_text() == "# hello\n" for path in clones)
    assert limiter.peak == 1
    assert limiter.in_use == 0


def test_parallel_sessions(world: World, tmp_path: Path) -> None:
    client = world.alice_client
    processes = [
        subprocess.Popen(
            ["git", "clone", "-q", client.url("alice", "hello"), str(tmp_path / f"c{index}")],
            cwd=tmp_path,
            env=git_env(client.home, GIT_SSH_COMMAND=client.ssh_command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for index in range(6)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    assert all((tmp_path / f"c{index}" / "README.md").exists() for index in range(6))


# Host keys --------------------------------------------------------------------------------------


def _scan_host_keys(port: int) -> set[str]:
    result = subprocess.run(
        ["ssh-keyscan", "-p", str(port), "-t", "ed25519,rsa", "127.0.0.1"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return {" ".join(line.split()[1:3]) for line in result.stdout.decode().splitlines() if line}


def test_host_keys_persist_across_restarts(ssh_server: SSHServer, settings: Settings) -> None:
    before = _scan_host_keys(settings.ssh_port)  # the first connection creates them
    directory = host_keys_dir(settings)
    private_files = sorted(directory.glob("ssh_host_*_key"))
    assert [path.name for path in private_files] == ["ssh_host_ed25519_key", "ssh_host_rsa_key"]
    for path in private_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rsa = asyncssh.read_private_key(directory / "ssh_host_rsa_key")
    assert rsa.algorithm == b"ssh-rsa"
    assert rsa.pyca_key.key_size == 3072  # type: ignore[attr-defined]

    assert {entry.split()[0] for entry in before} == {"ssh-ed25519", "ssh-rsa"}
    contents = {path: path.read_bytes() for path in private_files}

    ssh_server.stop()
    ssh_server.start()
    assert _scan_host_keys(settings.ssh_port) == before
    assert {path: path.read_bytes() for path in private_files} == contents


def test_host_keys_written_by_one_process_are_reused_by_another(
    settings: Settings, db: Database
) -> None:
    first = SSHServer(settings, db)
    first.start()
    before = _scan_host_keys(settings.ssh_port)
    first.shutdown()
    second_settings = settings.model_copy(update={"ssh_port": free_port()})
    second = SSHServer(second_settings, db)
    second.start()
    try:
        assert _scan_host_keys(second_settings.ssh_port) == before
    finally:
        second.shutdown()
