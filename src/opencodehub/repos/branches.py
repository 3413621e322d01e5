"""Deleting a branch from the web UI: the same policy as `git push --delete` (default branch and
protected branches refused by `pushes.check_push`), a compare-and-swap ref update, and the same
push record."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.core.errors import Conflict, NotFound
from opencodehub.core.events import EventBus
from opencodehub.repos import browse, pushes, service, store
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository


def delete_branch(
    session: Session,
    settings: Settings,
    repository: Repository,
    actor: Actor,
    name: str,
    *,
    events: EventBus | None = None,
) -> str:
    """Delete `refs/heads/{name}`; returns the sha it pointed at (to show or restore)."""
    authorize(session, actor, repository, Permission.WRITE)
    service.ensure_writable(repository)
    git_repo = store.open_repository(settings, repository.id)
    branch = browse.get_branch(git_repo, name)
    ref = f"refs/heads/{branch.name}"
    update = pushes.RefUpdate(ref, branch.sha, browse.ZERO_SHA)
    pushes.check_push(session, repository, actor, [update], git_repo=git_repo)
    repo_path = Path(git_repo.path.rstrip("/"))
    result = subprocess.run(
        [settings.git_binary, "--git-dir", str(repo_path), "update-ref", "-d", ref, branch.sha],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=store.git_environment(settings, repo_path),
        check=False,
    )
    if result.returncode != 0:
        if git_repo.references.get(ref) is None:
            raise NotFound("Branch not found")
        raise Conflict(f"{branch.name} moved while it was being deleted; try again.")
    pushes.record_push(session, settings, repository, actor, [update], events=events)
    return branch.sha
