"""Forks: a repository copied into another account, sharing its parent's objects.

Storage. A fork is a bare repository whose `objects/info/alternates` names its parent's object
directory, so forking copies refs, never objects, and costs the same for any size. Git follows
alternates transitively, so a fork of a fork sees the whole chain. The borrowing goes one way
only: a parent never reads a fork's objects (a pull request from a fork has its head fetched
into the base repository itself, as `refs/pull/{n}/head`), so nothing a fork does, `git gc`
included, can take an object the parent needs.

The other direction is what needs care:
- Maintenance of a repository that has forks must not drop objects it no longer references,
  because a fork may still reference them through its own refs. `repack()` packs such a
  repository with `--keep-unreachable`, and forking sets the parent's `gc.pruneExpire=never`, so
  even a `git gc` run by hand keeps them. A fork itself is repacked with `-l` (its own objects
  only), which never copies the parent's objects into it.
- Deleting a repository would pull the objects out from under its forks. Before the deletion is
  flushed, every direct fork is dissociated: `git repack -a -d -k` copies everything it borrows
  into its own pack, then its alternates file is removed. A fork of that fork borrows from the
  fork, which now holds everything, so the chain stays whole. (A repository deleted by a
  database cascade, when its owner account is deleted, bypasses the ORM and is not covered;
  deleting an account's repositories through the service first keeps their forks whole.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from sqlalchemy import and_, event, func, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import AccountKind, Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import Conflict, NotFound, ValidationFailed
from opencodehub.core.events import EventBus
from opencodehub.core.logging import get_logger
from opencodehub.core.pagination import Page
from opencodehub.repos import service, store
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository, Visibility
from opencodehub.repos.pushes import RefUpdate, record_push

log = get_logger("opencodehub.forks")

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"
FORK_SORTS = ("newest", "oldest", "stargazers", "watchers")
MAX_FORK_NETWORK_DEPTH = 32


def objects_dir(settings: Settings, repository_id: int) -> Path:
    return store.repository_path(settings, repository_id) / "objects"


def alternates_file(settings: Settings, repository_id: int) -> Path:
    return objects_dir(settings, repository_id) / "info" / "alternates"


def _set_alternate(settings: Settings, fork_id: int, parent_id: int) -> None:
    path = alternates_file(settings, fork_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{objects_dir(settings, parent_id).resolve()}\n")


def borrows_from(settings: Settings, repository_id: int) -> list[str]:
    """The object directories this repository borrows from (its alternates file)."""
    path = alternates_file(settings, repository_id)
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def network_root(session: Session, repository: Repository) -> Repository:
    """The repository at the top of the fork chain (GitHub's `source`)."""
    current = repository
    for _ in range(MAX_FORK_NETWORK_DEPTH):
        if current.fork_parent_id is None:
            return current
        parent = session.get(Repository, current.fork_parent_id)
        if parent is None:
            return current
        current = parent
    return current


def parent_of(session: Session, repository: Repository) -> Repository | None:
    if repository.fork_parent_id is None:
        return None
    return session.get(Repository, repository.fork_parent_id)


def in_same_network(session: Session, one: Repository, other: Repository) -> bool:
    return network_root(session, one).id == network_root(session, other).id


def _existing_fork(session: Session, parent: Repository, owner: User) -> Repository | None:
    return session.scalar(
        select(Repository).where(
            Repository.owner_id == owner.id, Repository.fork_parent_id == parent.id
        )
    )


def _free_name(session: Session, owner: User, wanted: str) -> str:
    """GitHub appends -1, -2 … when the owner already has a repository of that name."""
    taken = {
        name
        for (name,) in session.execute(
            select(Repository.lower_name).where(
                Repository.owner_id == owner.id,
                Repository.lower_name.like(f"{wanted.lower()[:90]}%"),
            )
        )
    }
    if wanted.lower() not in taken:
        return wanted
    for suffix in range(1, 1000):
        candidate = f"{wanted[:94]}-{suffix}"
        if candidate.lower() not in taken:
            return candidate
    raise ValidationFailed.exists("Repository", "name", "name already exists on this account")


def fork_repository(
    session: Session,
    settings: Settings,
    actor: Actor,
    parent: Repository,
    *,
    owner: User | None = None,
    name: str | None = None,
    default_branch_only: bool = False,
) -> Repository:
    """Fork `parent` into `owner` (the actor's own account by default, or an organization it is
    a member of). Forking again into the same account returns the existing fork, as on GitHub."""
    remember_settings(settings)
    authorize(session, actor, parent, Permission.READ)
    if actor.user is None:
        raise NotFound()
    target = owner or actor.user
    if not target.is_active:
        raise ValidationFailed.invalid("Fork", "organization", "is not an active account")
    if target.id == parent.owner_id:
        raise ValidationFailed.invalid(
            "Fork", "organization", "A repository cannot be forked into its own owner."
        )
    existing = _existing_fork(session, parent, target)
    if existing is not None:
        authorize(session, actor, existing, Permission.READ)
        return existing
    visibility = parent.visibility
    if visibility == Visibility.INTERNAL and target.kind != AccountKind.ORGANIZATION:
        visibility = Visibility.PRIVATE
    chosen = service.validate_repo_name(name) if name else _free_name(session, target, parent.name)
    fork = service.create_repository(
        session,
        settings,
        actor,
        target,
        chosen,
        description=parent.description,
        homepage=parent.homepage,
        visibility=visibility,
        default_branch=parent.default_branch,
    )
    fork.fork_parent_id = parent.id
    fork.topics = parent.topics
    _set_alternate(settings, fork.id, parent.id)
    parent_git = store.open_repository(settings, parent.id)
    parent_git.config["gc.pruneExpire"] = "never"
    fork_git = store.open_repository(settings, fork.id)
    copied = 0
    for ref_name in parent_git.references:
        if not ref_name.startswith((BRANCH_PREFIX, TAG_PREFIX)):
            continue
        if default_branch_only and ref_name != f"{BRANCH_PREFIX}{parent.default_branch}":
            continue
        reference = parent_git.references.get(ref_name)
        if reference is None or reference.type != pygit2.enums.ReferenceType.DIRECT:
            continue
        fork_git.references.create(ref_name, reference.target, force=True)
        copied += ref_name.startswith(BRANCH_PREFIX)
    fork.is_empty = copied == 0
    fork.pushed_at = parent.pushed_at
    fork.size_kb = store.disk_usage_kb(settings, fork.id)
    session.flush()
    return fork


def list_forks(
    session: Session, actor: Actor, repository: Repository, page: Page, sort: str | None = None
) -> tuple[list[Repository], int]:
    """The direct forks of `repository` the actor may see."""
    authorize(session, actor, repository, Permission.READ)
    sort = sort or "newest"
    if sort not in FORK_SORTS:
        raise ValidationFailed.invalid("Fork", "sort", f"must be one of {', '.join(FORK_SORTS)}")
    condition = and_(Repository.fork_parent_id == repository.id, service.readable_condition(actor))
    order: list[Any] = (
        [Repository.created_at.asc(), Repository.id.asc()]
        if sort == "oldest"
        else [Repository.created_at.desc(), Repository.id.desc()]
    )
    total = session.scalar(select(func.count()).select_from(Repository).where(condition)) or 0
    forks = list(
        session.scalars(
            select(Repository)
            .where(condition)
            .order_by(*order)
            .offset(page.offset)
            .limit(page.limit)
        )
    )
    return forks, total


def forks_count(session: Session, repository: Repository) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Repository)
            .where(Repository.fork_parent_id == repository.id)
        )
        or 0
    )


# Syncing a fork with its upstream --------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    message: str
    merge_type: str  # fast-forward, merge, none
    base_branch: str  # upstream-owner:branch


class SyncConflict(Conflict):
    default_message = "There are merge conflicts"


def sync_branch(
    session: Session,
    settings: Settings,
    actor: Actor,
    fork: Repository,
    branch: str,
    *,
    events: EventBus | None = None,
) -> SyncResult:
    """GitHub's "Sync fork" (`merge-upstream`): bring `branch` of the fork up to the parent's
    branch of the same name; a fast-forward when the fork has nothing of its own, else a merge
    commit when it merges cleanly, else a 409 and nothing changes."""
    from opencodehub.pulls import merge

    authorize(session, actor, fork, Permission.WRITE)
    service.ensure_writable(fork)
    parent = parent_of(session, fork)
    if parent is None:
        raise ValidationFailed.invalid("Repository", "branch", "This repository is not a fork.")
    authorize(session, actor, parent, Permission.READ)
    service.validate_branch_name(branch, "branch")
    ref = f"{BRANCH_PREFIX}{branch}"
    parent_git = store.open_repository(settings, parent.id)
    fork_git = store.open_repository(settings, fork.id)
    upstream = parent_git.references.get(ref)
    if upstream is None:
        raise ValidationFailed.invalid(
            "Repository", "branch", f"The branch {branch} does not exist upstream."
        )
    label = f"{parent.owner.username}:{branch}"
    upstream_sha = str(upstream.resolve().target)
    if borrows_from(settings, fork.id) == []:
        # A dissociated fork does not see the parent's objects: fetch what is missing.
        _fetch(settings, parent.id, fork.id, upstream_sha)
    current = fork_git.references.get(ref)
    old_sha = str(current.resolve().target) if current is not None else merge.ZERO_SHA
    if old_sha == upstream_sha or (
        current is not None and fork_git.descendant_of(old_sha, upstream_sha)
    ):
        return SyncResult("This branch is not behind the upstream " + label + ".", "none", label)
    if current is None or fork_git.descendant_of(upstream_sha, old_sha):
        new_sha, merge_type = upstream_sha, "fast-forward"
        message = f"Successfully fetched and fast-forwarded from upstream {label}."
    else:
        from opencodehub.repos.service import _signature_for

        assert actor.user is not None
        signature = _signature_for(actor.user, settings)
        try:
            new_sha = merge.create_merge_commit(
                fork_git,
                old_sha,
                upstream_sha,
                f"Merge branch '{branch}' of {parent.full_name}",
                signature,
                signature,
            )
        except merge.MergeConflict as exc:
            raise SyncConflict() from exc
        merge_type = "merge"
        message = f"Successfully fetched and merged from upstream {label}."
    _check_ref_update(session, fork, actor, ref, old_sha, new_sha, fork_git)
    try:
        merge.update_ref(settings, fork.id, ref, new_sha, old_sha)
    except merge.RefMoved as exc:
        raise Conflict("The branch moved while it was being synced; try again.") from exc
    record_push(session, settings, fork, actor, [RefUpdate(ref, old_sha, new_sha)], events=events)
    return SyncResult(message, merge_type, label)


def _check_ref_update(
    session: Session,
    repository: Repository,
    actor: Actor,
    ref: str,
    old: str,
    new: str,
    git_repo: pygit2.Repository,
) -> None:
    """Branch protection's verdict on a ref the server moves for the actor."""
    from opencodehub.pulls import protection

    protection.check_ref_update(
        session, repository, actor, ref, old, new, via="api", git_repo=git_repo
    )


def _fetch(settings: Settings, source_id: int, target_id: int, sha: str) -> None:
    """Copy the objects reachable from `sha` from one repository into another (no ref moves)."""
    from opencodehub.pulls import merge

    target_path = store.repository_path(settings, target_id)
    source_path = store.repository_path(settings, source_id)
    env = store.git_environment(settings, target_path, {"GIT_DIR": str(target_path)})
    env["GIT_CONFIG_KEY_1"] = "safe.directory"
    env["GIT_CONFIG_VALUE_1"] = str(source_path)
    env["GIT_CONFIG_COUNT"] = "2"
    import subprocess

    result = subprocess.run(
        [
            "git",
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            "--end-of-options",
            str(source_path),
            sha,
        ],
        cwd=target_path,
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise merge.RefMoved(result.stderr.decode("utf-8", "replace").strip())


def fetch_objects(settings: Settings, source_id: int, target_id: int, sha: str) -> None:
    """Make `sha` and its history present in `target` (a pull request's head from a fork)."""
    git = store.open_repository(settings, target_id)
    if git.get(sha) is not None:
        return
    _fetch(settings, source_id, target_id, sha)


# Maintenance and deletion ----------------------------------------------------------------------


def repack(session: Session, settings: Settings, repository: Repository) -> None:
    """Repack a repository without ever losing an object a fork or a parent relies on."""
    from opencodehub.pulls import merge

    args = ["repack", "-a", "-d", "-q"]
    if forks_count(session, repository):
        args.append("--keep-unreachable")
    if borrows_from(settings, repository.id):
        args.append("-l")
    merge.run_git(settings, store.repository_path(settings, repository.id), args)


def dissociate(settings: Settings, repository_id: int) -> None:
    """Copy every borrowed object into the repository itself and stop borrowing."""
    from opencodehub.pulls import merge

    path = store.repository_path(settings, repository_id)
    if not path.exists() or not borrows_from(settings, repository_id):
        return
    merge.run_git(settings, path, ["repack", "-a", "-d", "-q", "--keep-unreachable"])
    os.remove(alternates_file(settings, repository_id))


# Settings of every app, worker and CLI in this process that forked or asked for forks: the
# deletion hook has only the session, so it looks for the deleted repository under these.
_SEEN_SETTINGS: dict[str, Settings] = {}


def remember_settings(settings: Settings) -> None:
    _SEEN_SETTINGS[str(settings.repos_dir)] = settings


def _candidate_settings() -> list[Settings]:
    candidates = list(_SEEN_SETTINGS.values())
    try:
        from opencodehub.config import get_settings

        candidates.append(get_settings())
    except Exception:  # no usable configuration in this process
        log.debug("no process-wide settings for the fork deletion hook")
    return candidates


@event.listens_for(Session, "before_flush")
def _dissociate_forks_of_deleted(session: Session, _context: Any, _instances: Any) -> None:
    deleted = [obj for obj in session.deleted if isinstance(obj, Repository)]
    if not deleted:
        return
    for repository in deleted:
        fork_ids = session.scalars(
            select(Repository.id).where(Repository.fork_parent_id == repository.id)
        ).all()
        if not fork_ids:
            continue
        for settings in _candidate_settings():
            parent_objects = str(objects_dir(settings, repository.id).resolve())
            for fork_id in fork_ids:
                # Only a fork that really borrows from this data directory's copy (a process
                # may know several data directories, as a test run does).
                if parent_objects not in borrows_from(settings, fork_id):
                    continue
                # A failure aborts the deletion: better a parent kept than a fork broken.
                dissociate(settings, fork_id)
