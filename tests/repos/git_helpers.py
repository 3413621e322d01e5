"""Helpers for the git-data tests: repositories made by the service, commits made with pygit2
(or with the real `git` client through a clone and a filesystem push)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pygit2
from pygit2.enums import FileMode

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import service, store
from opencodehub.repos.models import Repository, Visibility

# A file's content, or (mode, content) for executables, symlinks ("target" as content) and
# submodules (the commit sha as content); None deletes the path.
FileSpec = bytes | tuple[int, bytes] | None


def create_repo(
    db: Database,
    settings: Settings,
    owner: User,
    name: str = "project",
    *,
    auto_init: bool = False,
    visibility: Visibility = Visibility.PUBLIC,
) -> Repository:
    with db.session() as session:
        user = session.get(User, owner.id)
        assert user is not None
        repo = service.create_repository(
            session,
            settings,
            Actor(user=user, method="password"),
            user,
            name,
            auto_init=auto_init,
            visibility=visibility,
        )
        session.flush()
        session.expunge(repo)
        return repo


def _insert(
    git_repo: pygit2.Repository, tree: pygit2.Tree | None, parts: list[str], spec: FileSpec
) -> pygit2.Oid | None:
    builder = git_repo.TreeBuilder(tree) if tree is not None else git_repo.TreeBuilder()
    name = parts[0]
    if len(parts) == 1:
        if spec is None:
            if builder.get(name) is not None:
                builder.remove(name)
        else:
            mode, data = spec if isinstance(spec, tuple) else (FileMode.BLOB, spec)
            if mode == FileMode.COMMIT:
                builder.insert(name, pygit2.Oid(hex=data.decode()), mode)
            else:
                builder.insert(name, git_repo.create_blob(data), mode)
    else:
        existing = builder.get(name)
        subtree = git_repo.get(existing.id) if existing is not None else None
        new = _insert(
            git_repo, subtree if isinstance(subtree, pygit2.Tree) else None, parts[1:], spec
        )
        if new is None:
            if existing is not None:
                builder.remove(name)
        else:
            builder.insert(name, new, FileMode.TREE)
    if len(builder) == 0:
        return None
    return builder.write()


def commit_files(
    settings: Settings,
    repo: Repository,
    files: Mapping[str, FileSpec],
    *,
    branch: str = "main",
    message: str = "change",
    author: tuple[str, str] = ("Alice", "alice@example.com"),
    committer: tuple[str, str] | None = None,
    time: int | None = None,
    parents: list[str] | None = None,
) -> str:
    """A commit on `branch` (created if missing) changing `files`; returns its sha."""
    git_repo = store.open_repository(settings, repo.id)
    ref = f"refs/heads/{branch}"
    existing = git_repo.references.get(ref)
    if parents is None:
        parents = [str(existing.target)] if existing is not None else []
    tree: pygit2.Tree | None = git_repo.get(parents[0]).tree if parents else None
    tree_id: pygit2.Oid | None = tree.id if tree is not None else None
    for path, spec in files.items():
        current = git_repo.get(tree_id) if tree_id is not None else None
        tree_id = _insert(git_repo, current, path.split("/"), spec)
    if tree_id is None:
        tree_id = git_repo.TreeBuilder().write()
    when = time if time is not None else 1_700_000_000
    author_sig = pygit2.Signature(author[0], author[1], when, 0)
    committer_name, committer_email = committer or author
    committer_sig = pygit2.Signature(committer_name, committer_email, when, 0)
    oid = git_repo.create_commit(None, author_sig, committer_sig, message, tree_id, parents)
    git_repo.references.create(ref, oid, force=True)
    return str(oid)


def git(settings: Settings, repo_path: Path, *args: str, cwd: Path | None = None) -> str:
    env = store.git_environment(
        settings,
        repo_path,
        {
            "GIT_AUTHOR_NAME": "Bob",
            "GIT_AUTHOR_EMAIL": "bob@example.com",
            "GIT_COMMITTER_NAME": "Bob",
            "GIT_COMMITTER_EMAIL": "bob@example.com",
        },
    )
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout
