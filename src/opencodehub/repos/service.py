"""Repository records: the only code that writes the repos tables."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pygit2
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.time import utcnow
from opencodehub.repos import store
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository, RepositoryRedirect, Visibility

REPO_NAME_RE = re.compile(r"\A[A-Za-z0-9._-]{1,100}\Z")
# A ref name as git-check-ref-format accepts it, narrowed: no leading '-', no control characters.
BRANCH_NAME_RE = re.compile(r"\A(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\x00-\x20~^:?*\[\\\x7f]{1,255}(?<![./])\Z")


def validate_repo_name(name: str) -> str:
    if not isinstance(name, str) or not REPO_NAME_RE.match(name):
        raise ValidationFailed.invalid(
            "Repository",
            "name",
            "may only contain ASCII letters, digits, '.', '-' and '_', 1 to 100 characters",
        )
    if name in (".", "..") or name.lower().endswith(".git"):
        raise ValidationFailed.invalid(
            "Repository", "name", "must not be '.' or '..' and must not end in '.git'"
        )
    return name


def validate_branch_name(name: str, field: str = "default_branch") -> str:
    if (
        not isinstance(name, str)
        or not BRANCH_NAME_RE.match(name)
        or name.endswith(".lock")
        or "/." in name
        or name.startswith(".")
    ):
        raise ValidationFailed.invalid("Repository", field, "is not a valid branch name")
    return name


def strip_git_suffix(name: str) -> str:
    return name[:-4] if name.lower().endswith(".git") else name


# Lookup ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """A repository found by owner/name; `redirected` when the name was an old one."""

    repository: Repository
    redirected: bool


def locate(session: Session, owner_name: str, repo_name: str) -> Located | None:
    """Find a repository by owner and name (case-insensitive), following rename/transfer
    redirects. Does not authorize: callers must."""
    if not REPO_NAME_RE.match(repo_name or "") or not owner_name or len(owner_name) > 39:
        return None
    owner = accounts.get_account(session, owner_name)
    if owner is None:
        return None
    repo = session.scalar(
        select(Repository).where(
            Repository.owner_id == owner.id, Repository.lower_name == repo_name.lower()
        )
    )
    if repo is not None:
        return Located(repo, redirected=False)
    redirect = session.scalar(
        select(RepositoryRedirect).where(
            RepositoryRedirect.owner_id == owner.id,
            RepositoryRedirect.lower_name == repo_name.lower(),
        )
    )
    if redirect is None:
        return None
    target = session.get(Repository, redirect.repository_id)
    return Located(target, redirected=True) if target else None


def get_for(
    session: Session,
    actor: Actor,
    owner_name: str,
    repo_name: str,
    action: Permission | str = Permission.READ,
) -> Repository:
    """The repository, if `actor` may do `action` on it; NotFound when it does not exist or the
    actor may not see it, Forbidden when it may see but not act."""
    located = locate(session, owner_name, repo_name)
    if located is None:
        raise NotFound()
    authorize(session, actor, located.repository, action)
    return located.repository


# Creation --------------------------------------------------------------------------------------


def _signature_for(user: User, settings: Settings) -> pygit2.Signature:
    email = user.primary_email or f"{user.id}+{user.username}@users.noreply.{settings.ssh_clone_host}"
    return pygit2.Signature(user.full_name or user.username, email)


def create_repository(
    session: Session,
    settings: Settings,
    actor: Actor,
    owner: User,
    name: str,
    *,
    description: str = "",
    homepage: str = "",
    visibility: Visibility = Visibility.PUBLIC,
    default_branch: str = "main",
    auto_init: bool = False,
    initial_files: dict[str, bytes] | None = None,
) -> Repository:
    """Create the record and the bare repository on disk; nothing is left behind on failure.

    `initial_files` (path -> content) seed the first commit together with the README when
    `auto_init` is set (the caller picks .gitignore and license templates).
    """
    if actor.user is None:
        raise NotFound()
    validate_repo_name(name)
    validate_branch_name(default_branch)
    if len(description) > 2000 or "\x00" in description:
        raise ValidationFailed.invalid("Repository", "description", "is too long or invalid")
    if len(homepage) > 255:
        raise ValidationFailed.invalid("Repository", "homepage", "is too long")
    taken = session.scalar(
        select(Repository.id).where(
            Repository.owner_id == owner.id, Repository.lower_name == name.lower()
        )
    )
    if taken:
        raise ValidationFailed.exists(
            "Repository", "name", "name already exists on this account"
        )
    # A new repository takes its name back from any redirect that pointed elsewhere.
    session.execute(
        RepositoryRedirect.__table__.delete().where(
            RepositoryRedirect.owner_id == owner.id,
            RepositoryRedirect.lower_name == name.lower(),
        )
    )
    repo = Repository(
        owner_id=owner.id,
        owner=owner,
        name=name,
        lower_name=name.lower(),
        description=description,
        homepage=homepage,
        visibility=visibility,
        default_branch=default_branch,
        is_empty=True,
    )
    session.add(repo)
    session.flush()
    try:
        git_repo = store.init_bare(settings, repo.id, default_branch)
        if auto_init:
            files = {"README.md": _readme(name, description)}
            files.update(initial_files or {})
            _initial_commit(git_repo, default_branch, files, _signature_for(actor.user, settings))
            repo.is_empty = False
            repo.pushed_at = utcnow()
    except BaseException:
        store.remove(settings, repo.id)
        raise
    return repo


def _readme(name: str, description: str) -> bytes:
    text = f"# {name}\n"
    if description:
        text += f"\n{description}\n"
    return text.encode()


def _initial_commit(
    git_repo: pygit2.Repository,
    branch: str,
    files: dict[str, bytes],
    signature: pygit2.Signature,
) -> pygit2.Oid:
    builder = git_repo.TreeBuilder()
    for path, content in sorted(files.items()):
        if "/" in path:
            raise ValueError("initial files live at the repository root")
        builder.insert(path, git_repo.create_blob(content), pygit2.GIT_FILEMODE_BLOB)
    tree = builder.write()
    return git_repo.create_commit(
        f"refs/heads/{branch}", signature, signature, "Initial commit", tree, []
    )
