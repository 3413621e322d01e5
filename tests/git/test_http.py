"""Git smart HTTP against the real git client and raw requests."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.git import heap
from opencodehub.git import process as git_process
from opencodehub.git.http import GitHTTPMiddleware, _Authorized
from opencodehub.repos import store
from opencodehub.repos.models import (
    Collaborator,
    CommitRecord,
    ProtectedBranch,
    PushRecord,
    Repository,
    RepositoryRedirect,
)
from tests.conftest import PASSWORD, LiveServer
from tests.git.gitutil import (
    CountingTrimmer,
    commit,
    create_repo,
    fsck,
    git_env,
    repo_url,
    run_git,
    server_refs,
)


@dataclass
class World:
    live: LiveServer
    db: Database
    settings: Settings
    alice: User
    tmp: Path
    home: Path

    def url(self, name: str, user: str | None = "alice", owner: str = "alice", **kw: str) -> str:
        return repo_url(self.live.url, owner, name, user, **kw)

    def workdir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir()
        run_git("init", "-q", cwd=path, home=self.home)
        return path

    def git(self, *args: str, cwd: Path | None = None, **kw: object):
        return run_git(*args, cwd=cwd or self.tmp, home=self.home, **kw)  # type: ignore[arg-type]


@pytest.fixture
def world(live_server: LiveServer, db: Database, make_user: Callable[..., User], tmp_path: Path):
    return World(
        live_server, db, live_server.settings, make_user("alice"), tmp_path, tmp_path / "home"
    )


def _head(world: World, path: Path, rev: str = "HEAD") -> str:
    return world.git("rev-parse", rev, cwd=path).stdout.strip()


# Clone, fetch, push ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_push_clone_fetch(world: World, protocol: str) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "project")
    work = world.workdir("work")
    first = commit(work, world.home, {"README.md": "hello\n", "src/a.py": "x = 1\n"}, "first")
    proto = ("-c", f"protocol.version={protocol}")
    pushed = world.git(*proto, "push", world.url("project"), "main", cwd=work)
    assert "[new branch]" in pushed.stderr

    clone = world.tmp / "clone"
    world.git(*proto, "clone", "-q", world.url("project", user=None), str(clone))
    assert _head(world, clone) == first
    assert (clone / "src/a.py").read_text() == "x = 1\n"

    second = commit(work, world.home, {"b.txt": "two\n"}, "second")
    world.git(*proto, "push", world.url("project"), "main", cwd=work)
    world.git(*proto, "fetch", "-q", "origin", cwd=clone)
    assert _head(world, clone, "origin/main") == second
    world.git(*proto, "pull", "-q", "--ff-only", cwd=clone)
    assert (clone / "b.txt").read_text() == "two\n"
    # ls-remote exercises the advertisement alone.
    listed = world.git(*proto, "ls-remote", world.url("project", user=None)).stdout
    assert f"{second}\trefs/heads/main" in listed
    fsck(world.settings, repo.id, world.home)


def test_concurrent_clones_wait_for_a_pack_process_slot(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot, four clones started at once all succeed, one upload-pack at a time."""
    create_repo(world.db, world.settings, world.alice, "shared", auto_init=True)
    limiter = git_process.ProcessLimiter(1)
    monkeypatch.setattr(git_process, "PACK_PROCESSES", limiter)
    clones = [world.tmp / f"clone{index}" for index in range(4)]
    procs = [
        subprocess.Popen(
            ["git", "clone", "-q", world.url("shared", user=None), str(path)],
            env=git_env(world.home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in clones
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], results
    assert all((path / "README.md").is_file() for path in clones)
    assert limiter.peak == 1
    # A clone ends once it has read the pack; the server still waits for its upload-pack to
    # exit before it hands the slot back, so the release can come a moment later.
    deadline = time.monotonic() + 10
    while limiter.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limiter.in_use == 0


def test_shallow_clone_and_deepen(world: World) -> None:
    create_repo(world.db, world.settings, world.alice, "deep")
    work = world.workdir("work")
    shas = [commit(work, world.home, {"n.txt": f"{i}\n"}, f"commit {i}") for i in range(5)]
    world.git("push", world.url("deep"), "main", cwd=work)

    clone = world.tmp / "shallow"
    world.git("clone", "-q", "--depth=1", world.url("deep", user=None), str(clone))
    assert world.git("rev-list", "--count", "HEAD", cwd=clone).stdout.strip() == "1"
    world.git("fetch", "-q", "--deepen=2", cwd=clone)
    assert world.git("rev-list", "--count", "HEAD", cwd=clone).stdout.strip() == "3"
    world.git("fetch", "-q", "--unshallow", cwd=clone)
    assert world.git("rev-list", "HEAD", cwd=clone).stdout.split() == shas[::-1]


@pytest.mark.parametrize("spec", ["blob:none", "tree:0"])
def test_partial_clone(world: World, spec: str) -> None:
    create_repo(world.db, world.settings, world.alice, "partial")
    work = world.workdir("work")
    commit(work, world.home, {"big.bin": os.urandom(200_000), "dir/f.txt": "f\n"}, "one")
    head = commit(work, world.home, {"dir/g.txt": "g\n"}, "two")
    world.git("push", world.url("partial"), "main", cwd=work)

    clone = world.tmp / "partial"
    world.git("clone", "-q", f"--filter={spec}", world.url("partial", user=None), str(clone))
    assert world.git("config", "remote.origin.partialclonefilter", cwd=clone).stdout.strip() == spec
    # The checkout fetched the missing objects lazily, over the same transport.
    assert (clone / "dir/g.txt").read_text() == "g\n"
    assert _head(world, clone) == head
    world.git("log", "-p", "-q", cwd=clone)  # reading history fetches what else is missing


def test_tags_and_branch_deletion(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "tags")
    work = world.workdir("work")
    first = commit(work, world.home, {"a": "1"}, "first")
    world.git("tag", "v1.0", cwd=work)
    world.git("tag", "-a", "v1.1", "-m", "annotated", cwd=work)
    world.git("branch", "feature", cwd=work)
    world.git("push", world.url("tags"), "main", "feature", "--tags", cwd=work)
    refs = server_refs(world.settings, repo.id)
    assert refs["refs/tags/v1.0"] == first
    assert refs["refs/heads/feature"] == first

    clone = world.tmp / "clone"
    world.git("clone", "-q", world.url("tags", user=None), str(clone))
    tags = world.git("tag", "--list", cwd=clone).stdout.split()
    assert tags == ["v1.0", "v1.1"]
    assert world.git("cat-file", "-t", "v1.1", cwd=clone).stdout.strip() == "tag"

    deleted = world.git("push", world.url("tags"), "--delete", "feature", "v1.0", cwd=work)
    assert "[deleted]" in deleted.stderr
    refs = server_refs(world.settings, repo.id)
    assert "refs/heads/feature" not in refs
    assert "refs/tags/v1.0" not in refs
    with world.db.session() as session:
        kinds = {
            (p.ref, p.new_sha.strip("0") == "")
            for p in session.scalars(select(PushRecord).where(PushRecord.repository_id == repo.id))
        }
    assert ("refs/heads/feature", True) in kinds
    assert ("refs/tags/v1.0", True) in kinds


@pytest.mark.slow
def test_large_file_push_and_clone(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "large")
    work = world.workdir("work")
    with (work / "large.bin").open("wb") as handle:
        for _ in range(100):
            handle.write(os.urandom(1024 * 1024))
    head = commit(work, world.home, {}, "100 MB of noise")
    world.git("push", world.url("large"), "main", cwd=work, timeout=600)
    clone = world.tmp / "clone"
    world.git("clone", "-q", world.url("large", user=None), str(clone), timeout=600)
    assert _head(world, clone) == head
    assert (clone / "large.bin").stat().st_size == 100 * 1024 * 1024
    assert (
        world.git("hash-object", "large.bin", cwd=clone).stdout
        == world.git("hash-object", "large.bin", cwd=work).stdout
    )
    fsck(world.settings, repo.id, world.home)


def test_transfers_trim_the_heap_as_they_move(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push's body and a clone's pack ask for a heap trim every TRIM_EVERY_BYTES moved (see
    `git/heap.py`), so that a long transfer cannot fault the heap's handed-back pages in."""
    trimmer = CountingTrimmer()
    monkeypatch.setattr(heap, "HEAP_TRIMMER", trimmer)
    monkeypatch.setattr(heap, "TRIM_EVERY_BYTES", 1024 * 1024)
    create_repo(world.db, world.settings, world.alice, "trimmed")
    work = world.workdir("work")
    # 8 MB that no compression shrinks: the push moves at least eight thresholds' worth.
    noise = {f"noise{index}.bin": os.urandom(1024 * 1024) for index in range(8)}
    head = commit(work, world.home, noise, "8 MB of noise")
    world.git("push", world.url("trimmed"), "main", cwd=work, timeout=300)
    pushed = trimmer.requests
    assert pushed >= 7, f"{pushed} trims for an 8 MB push"

    clone = world.tmp / "clone"
    world.git("clone", "-q", "--bare", world.url("trimmed", user=None), str(clone), timeout=300)
    assert world.git("rev-parse", "main", cwd=clone).stdout.strip() == head
    assert trimmer.requests - pushed >= 7, f"{trimmer.requests - pushed} trims for the clone"


def test_empty_repository_clone_and_first_push_sets_default_branch(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "empty")
    clone = world.tmp / "empty-clone"
    cloned = world.git("clone", world.url("empty", user=None), str(clone))
    assert "empty repository" in cloned.stderr
    work = world.workdir("work")
    commit(work, world.home, {"a": "1"}, "first")
    world.git("push", world.url("empty"), "main:trunk", cwd=work)
    with world.db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        assert record.default_branch == "trunk"
        assert record.is_empty is False
        assert record.pushed_at is not None
        assert record.size_kb == store.disk_usage_kb(world.settings, repo.id)
    # The on-disk HEAD follows, so a clone checks the branch out.
    second = world.tmp / "second"
    world.git("clone", "-q", world.url("empty", user=None), str(second))
    assert world.git("branch", "--show-current", cwd=second).stdout.strip() == "trunk"


# Permissions -----------------------------------------------------------------------------------


def _add_collaborator(db: Database, repo: Repository, user: User, permission: Permission) -> None:
    with db.session() as session:
        session.add(Collaborator(repository_id=repo.id, user_id=user.id, permission=permission))


def test_private_repository_refusals(world: World, make_user: Callable[..., User]) -> None:
    repo = create_repo(
        world.db, world.settings, world.alice, "secret", private=True, auto_init=True
    )
    make_user("mallory")
    reader = make_user("reader")
    _add_collaborator(world.db, repo, reader, Permission.READ)

    anonymous = world.git("clone", world.url("secret", user=None), "anon", check=False)
    assert anonymous.returncode != 0
    assert "terminal prompts disabled" in anonymous.stderr or "Username" in anonymous.stderr

    stranger = world.git("clone", world.url("secret", user="mallory"), "stranger", check=False)
    assert stranger.returncode != 0
    assert "not found" in stranger.stderr.lower()

    wrong_password = world.git(
        "clone", world.url("secret", user="alice", secret="wrong"), "wrong", check=False
    )
    assert wrong_password.returncode != 0
    assert "Authentication failed" in wrong_password.stderr

    world.git("clone", "-q", world.url("secret", user="reader"), "reader")
    work = world.tmp / "reader"
    commit(work, world.home, {"x": "y"}, "reader change")
    pushed = world.git("push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr
    assert "denied to reader" in pushed.stderr

    world.git("clone", "-q", world.url("secret"), "owner")
    fsck(world.settings, repo.id, world.home)


def test_personal_access_token_scopes(world: World, make_token: Callable[..., str]) -> None:
    create_repo(world.db, world.settings, world.alice, "private", private=True, auto_init=True)
    create_repo(world.db, world.settings, world.alice, "public", auto_init=True)
    full = make_token(world.alice, ["repo"])
    narrow = make_token(world.alice, ["user"])

    world.git("clone", "-q", world.url("private", secret=full), "full")
    refused = world.git("clone", world.url("private", secret=narrow), "narrow", check=False)
    assert refused.returncode != 0
    assert "not found" in refused.stderr.lower()

    # Reading a public repository needs no scope; pushing to it needs public_repo.
    world.git("clone", "-q", world.url("public", secret=narrow), "public")
    work = world.tmp / "public"
    commit(work, world.home, {"x": "y"}, "change")
    pushed = world.git("push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "403" in pushed.stderr

    # Authorization: token / Bearer work as well as Basic.
    for scheme in ("token", "Bearer"):
        response = httpx.get(
            f"{world.live.url}/alice/private.git/info/refs?service=git-upload-pack",
            headers={"Authorization": f"{scheme} {full}"},
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-git-upload-pack-advertisement"


def test_renamed_repository_redirects(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "old-name", auto_init=True)
    with world.db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        record.name = record.lower_name = "new-name"
        session.add(
            RepositoryRedirect(
                owner_id=world.alice.id, lower_name="old-name", repository_id=repo.id
            )
        )
    response = httpx.get(
        f"{world.live.url}/alice/old-name.git/info/refs?service=git-upload-pack",
        follow_redirects=False,
    )
    assert response.status_code == 301
    assert response.headers["location"] == "/alice/new-name.git/info/refs?service=git-upload-pack"
    cloned = world.git("clone", world.url("old-name", user=None), "renamed")
    assert "redirecting to" in cloned.stderr
    assert (world.tmp / "renamed" / "README.md").exists()


# Policy from the hooks ---------------------------------------------------------------------------


def test_protected_branch_refuses_force_push_and_deletion(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "guarded")
    with world.db.session() as session:
        session.add(ProtectedBranch(repository_id=repo.id, pattern="rel*"))
    work = world.workdir("work")
    commit(work, world.home, {"a": "1"}, "one")
    second = commit(work, world.home, {"a": "2"}, "two")
    world.git("push", world.url("guarded"), "main", "main:release", cwd=work)

    world.git("reset", "-q", "--hard", "HEAD~1", cwd=work)
    rewritten = commit(work, world.home, {"b": "3"}, "rewritten")
    forced = world.git(
        "push", "--force", world.url("guarded"), "main:release", cwd=work, check=False
    )
    assert forced.returncode != 0
    assert "remote: Protected branch update failed for refs/heads/release" in forced.stderr
    assert "pre-receive hook declined" in forced.stderr
    deleted = world.git("push", world.url("guarded"), "--delete", "release", cwd=work, check=False)
    assert deleted.returncode != 0
    assert "cannot delete a protected branch" in deleted.stderr
    assert server_refs(world.settings, repo.id)["refs/heads/release"] == second

    # Unprotected branches still take force pushes, and a fast-forward still lands on release.
    world.git("push", "--force", world.url("guarded"), "main", cwd=work)
    assert server_refs(world.settings, repo.id)["refs/heads/main"] == rewritten
    world.git("fetch", "-q", world.url("guarded"), "release", cwd=work)
    world.git("checkout", "-q", "-B", "release", "FETCH_HEAD", cwd=work)
    third = commit(work, world.home, {"c": "4"}, "three")
    world.git("push", world.url("guarded"), "release", cwd=work)
    assert server_refs(world.settings, repo.id)["refs/heads/release"] == third
    fsck(world.settings, repo.id, world.home)


def test_archived_repository_refuses_pushes(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "frozen", auto_init=True)
    with world.db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        record.is_archived = True
    world.git("clone", "-q", world.url("frozen"), "frozen")
    work = world.tmp / "frozen"
    commit(work, world.home, {"x": "y"}, "change")
    pushed = world.git("push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "archived" in pushed.stderr


def test_push_indexes_commits_and_publishes_event(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "indexed")
    received: list[dict] = []
    got = threading.Event()

    def on_push(payload: dict) -> None:
        received.append(payload)
        got.set()

    world.live.server.config.app.state.events.subscribe("push", on_push)
    work = world.workdir("work")
    shas = [commit(work, world.home, {"f": str(i)}, f"change {i}") for i in range(3)]
    world.git("push", world.url("indexed"), "main", cwd=work)
    assert got.wait(10)
    event = received[0]
    assert event["repository"] == "alice/indexed"
    assert event["pusher"] == "alice"
    assert event["updates"] == [
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": shas[-1],
            "created": True,
            "deleted": False,
            "forced": False,
        }
    ]
    with world.db.session() as session:
        rows = session.scalars(
            select(CommitRecord).where(CommitRecord.repository_id == repo.id)
        ).all()
        assert {row.sha for row in rows} == set(shas)
        assert {row.summary for row in rows} == {"change 0", "change 1", "change 2"}
        assert {row.author_email for row in rows} == {"author@example.com"}

    # A new branch on top indexes only what is new.
    world.git("checkout", "-q", "-b", "topic", cwd=work)
    topic = commit(work, world.home, {"g": "1"}, "topic work")
    world.git("push", world.url("indexed"), "topic", cwd=work)
    with world.db.session() as session:
        count = len(
            session.scalars(
                select(CommitRecord.sha).where(CommitRecord.repository_id == repo.id)
            ).all()
        )
        assert count == 4
        assert (
            session.scalar(select(CommitRecord.sha).where(CommitRecord.summary == "topic work"))
            == topic
        )


def test_concurrent_pushes_to_one_branch(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "race", auto_init=True)
    clients = []
    for name in ("one", "two"):
        world.git("clone", "-q", world.url("race"), name)
        work = world.tmp / name
        clients.append((work, commit(work, world.home, {f"{name}.txt": name}, f"from {name}")))
    barrier = threading.Barrier(2)
    results: dict[str, int] = {}
    outputs: dict[str, str] = {}

    def push(work: Path) -> None:
        barrier.wait()
        result = world.git("push", "origin", "main", cwd=work, check=False)
        results[work.name] = result.returncode
        outputs[work.name] = result.stderr

    threads = [threading.Thread(target=push, args=(work,)) for work, _ in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results.values())[0] == 0, outputs
    assert sorted(results.values())[1] != 0, outputs
    winner = next(name for name, code in results.items() if code == 0)
    winner_sha = dict((work.name, sha) for work, sha in clients)[winner]
    assert server_refs(world.settings, repo.id)["refs/heads/main"] == winner_sha
    with world.db.session() as session:
        records = session.scalars(
            select(PushRecord).where(PushRecord.repository_id == repo.id)
        ).all()
        assert [record.new_sha for record in records] == [winner_sha]
    # The loser fetches, rebases and lands its work: nothing lost.
    loser = next(work for work, _ in clients if work.name != winner)
    world.git("pull", "-q", "--rebase", "origin", "main", cwd=loser)
    world.git("push", "origin", "main", cwd=loser)
    log = world.git("log", "--format=%s", "origin/main", cwd=loser).stdout
    assert "from one" in log and "from two" in log
    fsck(world.settings, repo.id, world.home)


# Bad input -------------------------------------------------------------------------------------


def _raw_get(base: str, target: bytes) -> tuple[int, bytes]:
    """Send the request target byte for byte: clients (httpx, http.client) would normalize or
    refuse what an attacker sends as is."""
    host, port = base.removeprefix("http://").split(":")
    auth = base64.b64encode(f"alice:{PASSWORD}".encode())
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
            + auth
            + b"\r\nConnection: close\r\n\r\n"
        )
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.mark.parametrize(
    "path",
    [
        b"/alice/../alice/bad.git/info/refs",
        b"/alice/%2e%2e/bad.git/info/refs",
        b"/alice/%2E%2E/alice/bad.git/info/refs",
        b"/alice/..%2fbad.git/info/refs",
        b"/alice/bad.git/../../etc/info/refs",
        b"//etc/passwd/info/refs",
        b"/alice//bad.git/info/refs",
        b"/alice/%00bad/info/refs",
        b"/alice/bad%0a.git/info/refs",
        b"/alice/bad%0d%0aX-Evil:%201/info/refs",
        b"/alice/-bad/info/refs",
        b"/-alice/bad/info/refs",
        "/alice/b\u0430d/info/refs".encode(),
        b"/alice/b%D0%B0d/info/refs",
        b"/alice/" + b"a" * 10_000 + b"/info/refs",
        b"/alice/bad'%3B%20DROP%20TABLE%20users%3B--/info/refs",
        b"/alice/bad.git/objects/info/refs",
        b"/alice/bad.git/HEAD/info/refs",
        b"/%2e%2e/%2e%2e/info/refs",
        b"/alice/./info/refs",
    ],
)
def test_bad_paths_are_not_found(world: World, path: bytes) -> None:
    create_repo(world.db, world.settings, world.alice, "bad", auto_init=True)
    status, rest = _raw_get(world.live.url, path + b"?service=git-upload-pack")
    assert status in (400, 404), rest
    assert b"git-upload-pack-advertisement" not in rest
    assert b"refs/heads/main" not in rest


@pytest.mark.parametrize(
    "query",
    [
        "service=git-upload-archive",
        "service=--upload-pack=touch%20/tmp/x",
        "service=",
        "",
        "service=git-upload-pack&service=git-receive-pack",
        "service=git-upload-pack%00",
    ],
)
def test_unknown_services_are_refused(world: World, query: str) -> None:
    create_repo(world.db, world.settings, world.alice, "svc", auto_init=True)
    response = httpx.get(f"{world.live.url}/alice/svc.git/info/refs?{query}")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")


def test_methods_content_types_and_case_insensitive_names(world: World) -> None:
    create_repo(world.db, world.settings, world.alice, "Mixed", auto_init=True)
    base = world.live.url
    assert (
        httpx.post(f"{base}/alice/Mixed.git/info/refs?service=git-upload-pack").status_code == 405
    )
    assert httpx.get(f"{base}/alice/Mixed.git/git-upload-pack").status_code == 405
    wrong_type = httpx.post(
        f"{base}/alice/Mixed.git/git-upload-pack",
        content=b"0000",
        headers={"Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 415
    response = httpx.get(f"{base}/ALICE/mixed/info/refs?service=git-upload-pack")
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("no-cache")
    assert response.content.startswith(b"001e# service=git-upload-pack\n0000")
    v2 = httpx.get(
        f"{base}/alice/Mixed.git/info/refs?service=git-upload-pack",
        headers={"Git-Protocol": "version=2"},
    )
    assert v2.content.startswith(b"000eversion 2\n")
    # A Git-Protocol value that is not one is ignored, not passed to git.
    odd = httpx.get(
        f"{base}/alice/Mixed.git/info/refs?service=git-upload-pack",
        headers={"Git-Protocol": "version=2;rm -rf /"},
    )
    assert odd.content.startswith(b"001e# service=git-upload-pack\n0000")


def _receive_pack(
    world: World, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{world.live.url}/alice/target.git/git-receive-pack",
        content=body,
        auth=("alice", PASSWORD),
        headers={"Content-Type": "application/x-git-receive-pack-request", **(headers or {})},
        timeout=60,
    )


def _pkt(text: str) -> bytes:
    return f"{len(text.encode()) + 4:04x}".encode() + text.encode()


@pytest.mark.parametrize("kind", ["garbage", "truncated", "bad-gzip", "truncated-gzip", "no-pack"])
def test_bad_packs_leave_the_repository_intact(world: World, kind: str) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "target", auto_init=True)
    before = server_refs(world.settings, repo.id)
    head = before["refs/heads/main"]
    # A real pack to cut short: one new commit built by a client.
    work = world.tmp / "client"
    world.git("clone", "-q", world.url("target"), str(work))
    new = commit(work, world.home, {"n": os.urandom(50_000)}, "new")
    packed = subprocess.run(
        ["git", "pack-objects", "--stdout", "--revs"],
        input=f"{new}\n^{head}\n".encode(),
        cwd=work,
        env=git_env(world.home),
        capture_output=True,
        check=True,
    ).stdout
    command = _pkt(f"{head} {new} refs/heads/main\0report-status side-band-64k\n") + b"0000"
    headers: dict[str, str] = {}
    if kind == "garbage":
        body = command + b"PACK" + os.urandom(5000)
    elif kind == "truncated":
        body = command + packed[: len(packed) // 2]
    elif kind == "no-pack":
        body = command
    elif kind == "bad-gzip":
        body, headers = b"\x1f\x8bnot gzip at all", {"Content-Encoding": "gzip"}
    else:
        body, headers = gzip.compress(command + packed)[:-20], {"Content-Encoding": "gzip"}
    response = _receive_pack(world, body, headers)
    if kind in ("bad-gzip", "truncated-gzip"):
        assert response.status_code == 400
    else:
        assert response.status_code == 200
        assert b"unpack ok" not in response.content
    assert server_refs(world.settings, repo.id) == before
    fsck(world.settings, repo.id, world.home)
    # And the repository still takes a good push afterwards.
    world.git("push", "origin", "main", cwd=work)
    assert server_refs(world.settings, repo.id)["refs/heads/main"] == new


def test_gzip_request_bodies_are_accepted(world: World) -> None:
    create_repo(world.db, world.settings, world.alice, "zipped", auto_init=True)
    refs = httpx.get(f"{world.live.url}/alice/zipped.git/info/refs?service=git-upload-pack").content
    head = refs.split(b"\n")[1][8:48].decode()
    request = _pkt(f"want {head} side-band-64k\n") + b"0000" + _pkt("done\n")
    response = httpx.post(
        f"{world.live.url}/alice/zipped.git/git-upload-pack",
        content=gzip.compress(request),
        headers={
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Encoding": "gzip",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-result"
    assert b"NAK" in response.content[:16]
    assert b"PACK" in response.content


def test_gzip_bomb_is_bounded(world: World) -> None:
    create_repo(world.db, world.settings, world.alice, "bomb", auto_init=True)
    # 200 MiB of zeros compress to ~200 KB; the server stops at its request bound.
    compressor = __import__("zlib").compressobj(9, wbits=31)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(200)) + compressor.flush()
    response = httpx.post(
        f"{world.live.url}/alice/bomb.git/git-upload-pack",
        content=bomb,
        headers={
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Encoding": "gzip",
        },
        timeout=60,
    )
    assert response.status_code in (200, 413)
    assert b"PACK" not in response.content


def test_push_size_limit(world: World) -> None:
    repo = create_repo(world.db, world.settings, world.alice, "limited", auto_init=True)
    before = server_refs(world.settings, repo.id)
    world.settings.git_max_push_bytes = 20_000
    world.git("clone", "-q", world.url("limited"), "limited")
    work = world.tmp / "limited"
    commit(work, world.home, {"noise.bin": os.urandom(100_000)}, "too big")
    pushed = world.git("push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode != 0
    assert "413" in pushed.stderr or "too large" in pushed.stderr
    assert server_refs(world.settings, repo.id) == before
    fsck(world.settings, repo.id, world.home)
    commit(work, world.home, {"noise.bin": b"small"}, "small enough")
    world.git("reset", "-q", "--soft", "origin/main", cwd=work)
    world.git("commit", "-q", "-m", "small", cwd=work)
    # A push under the limit still lands.
    world.git("push", "origin", "main", cwd=work)
    world.settings.git_max_push_bytes = 0


def test_deeper_paths_are_left_to_the_web_ui(world: World) -> None:
    create_repo(world.db, world.settings, world.alice, "web", auto_init=True)
    # A file named like a git endpoint, shown by the web UI, is not the transport's to answer.
    response = httpx.get(f"{world.live.url}/alice/web/blob/main/git-upload-pack")
    assert response.status_code != 405
    assert response.text != "Method not allowed.\n"


def test_output_before_the_body_ends_does_not_deadlock(settings: Settings) -> None:
    """A service that writes more than a pipe holds before reading its input (as receive-pack's
    progress can) must not stall: its early output is spooled, then sent in order."""
    middleware = GitHTTPMiddleware(app=None, settings=settings, database=None)  # type: ignore[arg-type]
    early = 3 * 1024 * 1024
    chatty = _Authorized(
        ["sh", "-c", f"head -c {early} /dev/zero; wc -c"], {"PATH": os.environ["PATH"]}
    )
    chunks = [b"x" * 100_000] * 10
    sent: list[dict] = []

    async def receive() -> dict:
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    async def scenario() -> None:
        await asyncio.wait_for(
            middleware._rpc({}, receive, send, "git-upload-pack", chatty, {}), timeout=60
        )

    asyncio.run(scenario())
    assert sent[0]["type"] == "http.response.start"
    output = b"".join(message.get("body", b"") for message in sent[1:])
    assert output == bytes(early) + b"1000000\n"
