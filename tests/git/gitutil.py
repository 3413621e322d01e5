"""Helpers for tests that drive the real git client against a live server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.git import heap
from opencodehub.repos import service as repos
from opencodehub.repos import store
from opencodehub.repos.models import Repository, Visibility
from tests.conftest import PASSWORD


def git_env(home: Path, **extra: str) -> dict[str, str]:
    """A client environment that ignores the machine's git configuration and never prompts."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.com",
    }
    env.update(extra)
    return env


def run_git(
    *args: str, cwd: Path, home: Path, check: bool = True, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=git_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def repo_url(
    base: str, owner: str, name: str, user: str | None = None, secret: str = PASSWORD
) -> str:
    scheme, rest = base.split("://", 1)
    credentials = f"{quote(user, safe='')}:{quote(secret, safe='')}@" if user else ""
    return f"{scheme}://{credentials}{rest}/{owner}/{name}.git"


def create_repo(
    db: Database,
    settings: Settings,
    owner: User,
    name: str,
    *,
    private: bool = False,
    auto_init: bool = False,
) -> Repository:
    with db.session() as session:
        account = session.get(User, owner.id)
        assert account is not None
        return repos.create_repository(
            session,
            settings,
            Actor(user=account, method="password"),
            account,
            name,
            visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
            auto_init=auto_init,
        )


def commit(workdir: Path, home: Path, files: dict[str, bytes | str], message: str) -> str:
    for path, content in files.items():
        target = workdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    run_git("add", "-A", cwd=workdir, home=home)
    run_git("commit", "-q", "-m", message, cwd=workdir, home=home)
    return run_git("rev-parse", "HEAD", cwd=workdir, home=home).stdout.strip()


def fsck(settings: Settings, repository_id: int, home: Path) -> None:
    """The bare repository on the server is consistent."""
    path = store.repository_path(settings, repository_id)
    run_git("fsck", "--strict", "--no-dangling", cwd=path, home=home, GIT_DIR=str(path))


def server_refs(settings: Settings, repository_id: int) -> dict[str, str]:
    git_repo = store.open_repository(settings, repository_id)
    return {
        name: str(git_repo.references[name].resolve().target)
        for name in git_repo.references
        if name.startswith("refs/")
    }


class CountingTrimmer(heap.HeapTrimmer):
    """A heap trimmer that only counts the trims asked of it."""

    def __init__(self) -> None:
        super().__init__(trim=lambda: None)
        self.requests = 0

    def request(self) -> None:
        self.requests += 1
