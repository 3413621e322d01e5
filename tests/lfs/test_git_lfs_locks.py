"""File locking with the real `git lfs` client and two users over HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos.models import Collaborator
from tests.conftest import LiveServer
from tests.git.gitutil import create_repo, repo_url, run_git

pytestmark = pytest.mark.slow


def test_locks_with_two_users(
    live_server: LiveServer,
    settings: Settings,
    db: Database,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repository = create_repo(db, settings, alice, "game", auto_init=True)
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repository.id, user_id=bob.id, permission=Permission.WRITE)
        )
    work: dict[str, Path] = {}
    for name in ("alice", "bob"):
        home = tmp_path / f"home-{name}"
        work[name] = tmp_path / name
        run_git(
            "clone",
            "-q",
            repo_url(live_server.url, "alice", "game", name),
            str(work[name]),
            cwd=tmp_path,
            home=home,
        )
        run_git("lfs", "install", "--local", cwd=work[name], home=home)

    def lfs(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_git("lfs", *args, cwd=work[name], home=tmp_path / f"home-{name}", check=check)

    assert "Locked level.bin" in lfs("alice", "lock", "level.bin").stdout
    refused = lfs("bob", "lock", "level.bin", check=False)
    assert refused.returncode != 0
    listed = lfs("bob", "locks").stdout
    assert "level.bin" in listed and "alice" in listed
    assert lfs("bob", "unlock", "level.bin", check=False).returncode != 0
    # bob is no admin: not even --force works for him; alice (the owner) may.
    assert lfs("bob", "unlock", "--force", "level.bin", check=False).returncode != 0
    assert lfs("bob", "lock", "other.bin").returncode == 0
    assert lfs("alice", "unlock", "--force", "other.bin").returncode == 0
    assert lfs("alice", "unlock", "level.bin").returncode == 0
    assert lfs("bob", "locks").stdout.strip() == ""
