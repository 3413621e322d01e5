"""Repository records: the only code that writes the repos tables.

Every function that acts for a caller takes the `Actor` and asks `authorize()` itself, so the API,
the web UI and the CLI cannot forget to. Disk work that must follow the database (removing a
deleted repository, moving HEAD) runs only once the transaction commits; a repository created on
disk is removed again when its transaction does not commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pygit2
from sqlalchemy import ColumnElement, Select, and_, delete, event, false, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import ORMExecuteState, Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import (
    AccountKind,
    OrgMembership,
    Permission,
    Team,
    TeamMember,
    User,
)
from opencodehub.accounts.names import USERNAME_RE, validate_text
from opencodehub.config import Settings
from opencodehub.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.core.time import utcnow
from opencodehub.db import transaction
from opencodehub.repos import store, templates
from opencodehub.repos.authz import authorize, repository_permission
from opencodehub.repos.models import (
    Collaborator,
    Repository,
    RepositoryRedirect,
    TeamRepository,
    Visibility,
)

REPO_NAME_RE = re.compile(r"\A[A-Za-z0-9._-]{1,100}\Z")
# A ref name as git-check-ref-format accepts it, narrowed: no leading '-', no control characters.
BRANCH_NAME_RE = re.compile(
    r"\A(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\x00-\x20~^:?*\[\\\x7f]{1,255}(?<![./])\Z"
)
# Suffixes that would make a URL ambiguous: `x.git` is the git URL of `x`; `.wiki`, `.atom` and
# `.rss` are kept free for a wiki repository and feeds, as GitHub and Gitea do.
RESERVED_REPO_SUFFIXES = (".git", ".wiki", ".atom", ".rss")
RESERVED_REPO_NAMES = frozenset({".", ".."})

DESCRIPTION_MAX_LENGTH = 350  # GitHub's limit
HOMEPAGE_MAX_LENGTH = 255
TOPIC_RE = re.compile(r"\A[a-z0-9][a-z0-9-]{0,49}\Z")
MAX_TOPICS = 20

ARCHIVED_MESSAGE = "Repository was archived so is read-only."


def validate_repo_name(name: str) -> str:
    if not isinstance(name, str) or not REPO_NAME_RE.match(name):
        raise ValidationFailed.invalid(
            "Repository",
            "name",
            "may only contain ASCII letters, digits, '.', '-' and '_', 1 to 100 characters",
        )
    lowered = name.lower()
    if lowered in RESERVED_REPO_NAMES or lowered.endswith(RESERVED_REPO_SUFFIXES):
        raise ValidationFailed.invalid(
            "Repository",
            "name",
            "must not be '.' or '..' and must not end in .git, .wiki, .atom or .rss",
        )
    if name.startswith("-"):
        raise ValidationFailed.invalid("Repository", "name", "must not start with '-'")
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


def validate_description(description: str | None) -> str:
    return validate_text(description or "", "Repository", "description", DESCRIPTION_MAX_LENGTH)


def validate_homepage(homepage: str | None) -> str:
    return validate_text(homepage or "", "Repository", "homepage", HOMEPAGE_MAX_LENGTH)


def validate_topics(topics: list[str]) -> list[str]:
    """GitHub's topic rules: saved lower-cased, a letter or digit first, then letters, digits and
    hyphens, at most 50 characters each and 20 in all. Duplicates collapse."""
    if not isinstance(topics, list):
        raise ValidationFailed.invalid("Repository", "names", "must be a list of topics")
    cleaned: list[str] = []
    invalid: list[str] = []
    for topic in topics:
        if not isinstance(topic, str):
            invalid.append(repr(topic))
            continue
        stripped = topic.strip()
        # ASCII is checked before lowering: str.lower() maps look-alikes (the Kelvin sign) to
        # ASCII letters.
        lowered = stripped.lower()
        if not stripped.isascii() or not TOPIC_RE.match(lowered):
            invalid.append(topic[:60])
            continue
        if lowered not in cleaned:
            cleaned.append(lowered)
    if invalid:
        raise ValidationFailed(
            FieldError(
                "Repository",
                "names",
                "invalid",
                "Topics must start with a lowercase letter or number, consist of 50 characters "
                "or less, and can include hyphens: " + ", ".join(invalid),
            )
        )
    if len(cleaned) > MAX_TOPICS:
        raise ValidationFailed.invalid(
            "Repository", "names", f"A repository cannot have more than {MAX_TOPICS} topics."
        )
    return cleaned


def ensure_writable(repo: Repository) -> None:
    """Refuse any change to an archived repository's content (pushes, file edits, issues)."""
    if repo.is_archived:
        raise Forbidden(ARCHIVED_MESSAGE)


# Lookup ----------------------------------------------------------------------------------------


def get_account(session: Session, name: str) -> User | None:
    """A user or organization by name; a name no account could have (NUL, 10 KB, unicode) is
    not looked up at all, so it never reaches the database."""
    if not isinstance(name, str) or not USERNAME_RE.match(name):
        return None
    return accounts.get_account(session, name)


@dataclass(frozen=True)
class Located:
    """A repository found by owner/name; `redirected` when the name was an old one."""

    repository: Repository
    redirected: bool


# `locate` answers from this memo within one session until the session writes: a request on
# `/repos/{owner}/{repo}/...` looks the repository up in its redirect check and again in its route.
_LOCATED = "opencodehub.repos.located"
_NOT_MEMOIZED = object()


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_transaction_end")
def _forget_located(session: Session, *_: object) -> None:
    session.info.pop(_LOCATED, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_located_on_write(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info.pop(_LOCATED, None)


def locate(session: Session, owner_name: str, repo_name: str) -> Located | None:
    """Find a repository by owner and name (case-insensitive), following rename/transfer
    redirects. Does not authorize: callers must."""
    if not REPO_NAME_RE.match(repo_name or "") or not USERNAME_RE.match(owner_name or ""):
        return None
    key = (owner_name.lower(), repo_name.lower())
    # Pending changes (a rename not flushed yet) would make an earlier answer stale.
    memo: dict[tuple[str, str], Located | None] | None = (
        None if session.new or session.dirty or session.deleted else session.info.get(_LOCATED)
    )
    found = memo.get(key, _NOT_MEMOIZED) if memo is not None else _NOT_MEMOIZED
    if found is not _NOT_MEMOIZED:
        return found  # type: ignore[return-value]
    located = _locate(session, owner_name, repo_name)
    if not (session.new or session.dirty or session.deleted):
        session.info.setdefault(_LOCATED, {})[key] = located
    return located


def _locate(session: Session, owner_name: str, repo_name: str) -> Located | None:
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


def get_by_id_for(
    session: Session, actor: Actor, repository_id: int, action: Permission | str = Permission.READ
) -> Repository:
    """GitHub's `/repositories/{id}`: the repository by id, authorized like `get_for`."""
    repo = session.get(Repository, repository_id) if 0 < repository_id < 2**63 else None
    if repo is None:
        raise NotFound()
    authorize(session, actor, repo, action)
    return repo


def permission_of(session: Session, actor: Actor, repo: Repository) -> Permission | None:
    """The caller's effective permission, for the `permissions` object of the JSON."""
    try:
        return authorize(session, actor, repo, Permission.READ)
    except (NotFound, Forbidden):
        return None


def find_redirect(session: Session, owner_name: str, repo_name: str) -> Repository | None:
    """The repository an old owner/name now leads to, when it is an old name (not authorized)."""
    located = locate(session, owner_name, repo_name)
    return located.repository if located is not None and located.redirected else None


# Who may create where ---------------------------------------------------------------------------


def _ensure_may_own(
    session: Session, actor: Actor, owner: User, *, visibility: Visibility, transfer: bool
) -> None:
    """The actor may put a repository under `owner`: its own account, or an organization it is a
    member of (owner, for a transfer in). A token needs `repo` (or `public_repo` for a public
    repository), as GitHub's classic scopes do."""
    if actor.user is None:
        raise NotFound()
    if actor.scopes is not None and not (
        actor.has_scope("repo")
        or (visibility == Visibility.PUBLIC and actor.has_scope("public_repo"))
    ):
        raise Forbidden("The token lacks the repo scope.")
    if not owner.is_active:
        raise NotFound()
    if owner.kind == AccountKind.ORGANIZATION:
        try:
            authorize(session, actor, owner, "admin" if transfer else "member")
        except NotFound:
            raise Forbidden(
                f"You need to be a member of {owner.username} to create repositories in it."
            ) from None
        return
    if owner.id != actor.user.id and not actor.is_site_admin:
        raise Forbidden("You can only create repositories in your own account.")


def _check_visibility(owner: User, visibility: Visibility | str) -> Visibility:
    try:
        chosen = Visibility(visibility)
    except ValueError:
        raise ValidationFailed.invalid(
            "Repository", "visibility", "must be public, private or internal"
        ) from None
    if chosen == Visibility.INTERNAL and owner.kind != AccountKind.ORGANIZATION:
        raise ValidationFailed.invalid(
            "Repository", "visibility", "only organization repositories can be internal"
        )
    return chosen


def _name_taken(session: Session, owner: User, name: str, except_id: int | None = None) -> bool:
    statement = select(Repository.id).where(
        Repository.owner_id == owner.id, Repository.lower_name == name.lower()
    )
    if except_id is not None:
        statement = statement.where(Repository.id != except_id)
    return session.scalar(statement) is not None


def _name_exists_error() -> ValidationFailed:
    return ValidationFailed.exists("Repository", "name", "name already exists on this account")


def _free_redirect(session: Session, owner_id: int, name: str) -> None:
    """A name taken (back) by a repository stops redirecting elsewhere."""
    session.execute(
        delete(RepositoryRedirect).where(
            RepositoryRedirect.owner_id == owner_id,
            RepositoryRedirect.lower_name == name.lower(),
        )
    )


def _flush_unique(session: Session) -> None:
    """Flush; two requests racing for one name end with one 422, not a 500."""
    try:
        session.flush()
    except IntegrityError:
        raise _name_exists_error() from None


# Creation --------------------------------------------------------------------------------------


def _signature_for(user: User, settings: Settings) -> pygit2.Signature:
    email = (
        user.primary_email or f"{user.id}+{user.username}@users.noreply.{settings.ssh_clone_host}"
    )
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
    gitignore_template: str | None = None,
    license_template: str | None = None,
) -> Repository:
    """Create the record and the bare repository on disk; nothing is left behind on failure.

    The actor must be `owner` itself or a member of the organization `owner`. With `auto_init`
    the first commit holds a README; a .gitignore or license template (or `initial_files`,
    path -> content at the root) also makes a first commit, as on GitHub.
    """
    if actor.user is None:
        raise NotFound()
    validate_repo_name(name)
    validate_branch_name(default_branch)
    description = validate_description(description)
    homepage = validate_homepage(homepage)
    visibility = _check_visibility(owner, visibility)
    files: dict[str, bytes] = {}
    if gitignore_template:
        source = templates.gitignore_source(gitignore_template)
        if source is None:
            raise ValidationFailed.invalid(
                "Repository", "gitignore_template", "is not a known .gitignore template"
            )
        files[".gitignore"] = source.encode()
    if license_template:
        license_ = templates.find_license(license_template)
        if license_ is None:
            raise ValidationFailed.invalid(
                "Repository", "license_template", "is not a known license"
            )
        files["LICENSE"] = license_.render(
            utcnow().year, owner.full_name or owner.username
        ).encode()
    files.update(initial_files or {})
    _ensure_may_own(session, actor, owner, visibility=visibility, transfer=False)
    if _name_taken(session, owner, name):
        raise _name_exists_error()
    _free_redirect(session, owner.id, name)
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
    _flush_unique(session)
    repo_id = repo.id
    try:
        git_repo = store.init_bare(settings, repo_id, default_branch)
        transaction.if_not_committed(session, lambda: store.remove(settings, repo_id))
        if auto_init:
            files = {"README.md": _readme(name, description), **files}
        if files:
            _initial_commit(git_repo, default_branch, files, _signature_for(actor.user, settings))
            repo.is_empty = False
            repo.pushed_at = utcnow()
            repo.size_kb = store.disk_usage_kb(settings, repo_id)
    except BaseException:
        store.remove(settings, repo_id)
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


# Changing a repository --------------------------------------------------------------------------


def _branch_state(settings: Settings, repo: Repository, branch: str) -> tuple[bool, bool]:
    """(the branch exists, the repository has any branch at all), read from disk."""
    git_repo = store.open_repository(settings, repo.id)
    names = set(git_repo.branches.local)
    return branch in names, bool(names)


def _set_head(settings: Settings, repository_id: int, branch: str) -> None:
    store.open_repository(settings, repository_id).set_head(f"refs/heads/{branch}")


def update_repository(
    session: Session,
    settings: Settings,
    actor: Actor,
    repo: Repository,
    *,
    name: str | None = None,
    description: str | None = None,
    homepage: str | None = None,
    visibility: Visibility | str | None = None,
    default_branch: str | None = None,
    topics: list[str] | None = None,
    archived: bool | None = None,
) -> Repository:
    """Change the given settings (None leaves one as it is); all are checked before any is
    written.

    Description, homepage and topics need maintain; the name, visibility, default branch and
    archiving need admin, as GitHub's roles have it. Only what actually changes counts, so a
    client that sends the current name back (PyGithub always does) needs no more than maintain.
    An archived repository takes no changes but being unarchived, renamed, made public or private.
    """
    changes: dict[str, Any] = {}
    if name is not None and name != repo.name:
        changes["name"] = validate_repo_name(name)
    if description is not None:
        value = validate_description(description)
        if value != repo.description:
            changes["description"] = value
    if homepage is not None:
        value = validate_homepage(homepage)
        if value != repo.homepage:
            changes["homepage"] = value
    if topics is not None:
        value_list = validate_topics(topics)
        if value_list != repo.topic_list:
            changes["topics"] = " ".join(value_list)
    if visibility is not None:
        chosen = _check_visibility(repo.owner, visibility)
        if chosen != repo.visibility:
            changes["visibility"] = chosen
    if default_branch is not None and default_branch != repo.default_branch:
        changes["default_branch"] = validate_branch_name(default_branch)
    if archived is not None and bool(archived) != repo.is_archived:
        changes["is_archived"] = bool(archived)

    admin_fields = {"name", "visibility", "default_branch", "is_archived"}
    needed = Permission.ADMIN if admin_fields & changes.keys() else Permission.MAINTAIN
    authorize(session, actor, repo, needed)
    if not changes:
        return repo

    content_fields = {"description", "homepage", "topics", "default_branch"}
    stays_archived = changes.get("is_archived", repo.is_archived)
    if repo.is_archived and stays_archived and content_fields & changes.keys():
        raise Forbidden(ARCHIVED_MESSAGE)

    if "default_branch" in changes:
        exists, has_branches = _branch_state(settings, repo, changes["default_branch"])
        if has_branches and not exists:
            raise ValidationFailed(
                FieldError(
                    "Repository",
                    "default_branch",
                    "invalid",
                    f"The branch {changes['default_branch']} was not found.",
                )
            )
    if "name" in changes:
        _rename(session, repo, changes.pop("name"))
    for attribute, value in changes.items():
        setattr(repo, attribute, value)
    if "default_branch" in changes:
        repo_id, branch = repo.id, changes["default_branch"]
        transaction.after_commit(session, lambda: _set_head(settings, repo_id, branch))
    repo.updated_at = utcnow()
    _flush_unique(session)
    return repo


def _rename(session: Session, repo: Repository, new_name: str) -> None:
    """Rename within the owner; the old name redirects unless only its case changed. Renaming
    back to an old name of the same repository takes that redirect back."""
    if new_name.lower() != repo.lower_name:
        if _name_taken(session, repo.owner, new_name, except_id=repo.id):
            raise _name_exists_error()
        _free_redirect(session, repo.owner_id, new_name)
        _free_redirect(session, repo.owner_id, repo.name)
        session.add(
            RepositoryRedirect(
                owner_id=repo.owner_id, lower_name=repo.lower_name, repository_id=repo.id
            )
        )
    repo.name = new_name
    repo.lower_name = new_name.lower()


def rename_repository(
    session: Session, settings: Settings, actor: Actor, repo: Repository, new_name: str
) -> Repository:
    return update_repository(session, settings, actor, repo, name=new_name)


def archive_repository(
    session: Session, settings: Settings, actor: Actor, repo: Repository, archived: bool = True
) -> Repository:
    return update_repository(session, settings, actor, repo, archived=archived)


def set_topics(
    session: Session, settings: Settings, actor: Actor, repo: Repository, topics: list[str]
) -> Repository:
    return update_repository(session, settings, actor, repo, topics=topics)


def transfer_repository(
    session: Session,
    actor: Actor,
    repo: Repository,
    new_owner_name: str,
    new_name: str | None = None,
) -> Repository:
    """Move the repository to another user (only oneself: there are no transfer requests) or to
    an organization the actor owns. The old owner/name redirects to it. Team grants of the old
    organization end; collaborators stay, but for the new owner."""
    authorize(session, actor, repo, Permission.ADMIN)
    target = get_account(session, new_owner_name)
    if target is None or not target.is_active:
        raise ValidationFailed.invalid(
            "Repository", "new_owner", "is not an existing user or organization"
        )
    name = validate_repo_name(new_name) if new_name else repo.name
    if target.id == repo.owner_id:
        raise ValidationFailed.invalid(
            "Repository", "new_owner", "the repository already belongs to this account"
        )
    visibility = repo.visibility
    if visibility == Visibility.INTERNAL and target.kind != AccountKind.ORGANIZATION:
        visibility = Visibility.PRIVATE  # a user account has no "internal"
    _ensure_may_own(session, actor, target, visibility=visibility, transfer=True)
    if _name_taken(session, target, name):
        raise _name_exists_error()

    _free_redirect(session, target.id, name)
    _free_redirect(session, repo.owner_id, repo.name)
    session.add(
        RepositoryRedirect(
            owner_id=repo.owner_id, lower_name=repo.lower_name, repository_id=repo.id
        )
    )
    session.execute(
        delete(Collaborator).where(
            Collaborator.repository_id == repo.id, Collaborator.user_id == target.id
        )
    )
    session.execute(delete(TeamRepository).where(TeamRepository.repository_id == repo.id))
    repo.owner_id = target.id
    repo.owner = target
    repo.name = name
    repo.lower_name = name.lower()
    repo.visibility = visibility
    repo.updated_at = utcnow()
    _flush_unique(session)
    return repo


def delete_repository(session: Session, settings: Settings, actor: Actor, repo: Repository) -> None:
    """Delete the record (its rows go with it) and, once that commits, the directory on disk.
    A token needs the `delete_repo` scope, as on GitHub."""
    authorize(session, actor, repo, Permission.ADMIN)
    if actor.scopes is not None and not actor.has_scope("delete_repo"):
        raise Forbidden("Must have admin rights to Repository.")
    repo_id = repo.id
    session.delete(repo)
    session.flush()
    transaction.after_commit(session, lambda: store.remove(settings, repo_id))


# Collaborators ---------------------------------------------------------------------------------


def _collaborator(session: Session, repo: Repository, user: User) -> Collaborator | None:
    return session.scalar(
        select(Collaborator).where(
            Collaborator.repository_id == repo.id, Collaborator.user_id == user.id
        )
    )


def add_collaborator(
    session: Session,
    actor: Actor,
    repo: Repository,
    user: User,
    permission: Permission = Permission.WRITE,
) -> tuple[Collaborator, bool]:
    """Give `user` direct access, or change the access they have. Returns the row and whether
    it is new. OpenCodeHub adds at once; there are no invitations to accept."""
    authorize(session, actor, repo, Permission.ADMIN)
    if user.kind != AccountKind.USER or not user.is_active:
        raise ValidationFailed.invalid("Collaborator", "username", "must be an active user")
    if user.id == repo.owner_id:
        raise ValidationFailed.invalid(
            "Collaborator", "username", "Repository owner cannot be a collaborator"
        )
    try:
        permission = Permission(permission)
    except ValueError:
        raise ValidationFailed.invalid(
            "Collaborator", "permission", "must be read, triage, write, maintain or admin"
        ) from None
    existing = _collaborator(session, repo, user)
    if existing is not None:
        existing.permission = permission
        session.flush()
        return existing, False
    row = Collaborator(repository_id=repo.id, user_id=user.id, user=user, permission=permission)
    session.add(row)
    session.flush()
    return row, True


def remove_collaborator(session: Session, actor: Actor, repo: Repository, user: User) -> None:
    """Take away `user`'s direct access (an admin, or the collaborator leaving). Removing
    someone who is not a collaborator is not an error, as on GitHub."""
    if actor.user is None or actor.user.id != user.id:
        authorize(session, actor, repo, Permission.ADMIN)
    session.execute(
        delete(Collaborator).where(
            Collaborator.repository_id == repo.id, Collaborator.user_id == user.id
        )
    )
    session.flush()


CollaboratorAffiliation = Literal["outside", "direct", "all"]


def _affiliated_users(
    session: Session, repo: Repository, affiliation: CollaboratorAffiliation
) -> list[User]:
    """Who GitHub lists as collaborators: direct collaborators, the owner of a personal
    repository, and (for `all`) the members of the owning organization."""
    direct_ids = select(Collaborator.user_id).where(Collaborator.repository_id == repo.id)
    org_member_ids = select(OrgMembership.user_id).where(OrgMembership.org_id == repo.owner_id)
    owner_is_user = repo.owner.kind == AccountKind.USER
    if affiliation == "outside":
        condition: ColumnElement[bool] = and_(
            User.id.in_(direct_ids), User.id.not_in(org_member_ids)
        )
    elif affiliation == "direct":
        condition = or_(
            User.id.in_(direct_ids), User.id == repo.owner_id if owner_is_user else false()
        )
    else:
        condition = or_(
            User.id.in_(direct_ids),
            User.id == repo.owner_id if owner_is_user else false(),
            User.id.in_(org_member_ids),
        )
    return list(
        session.scalars(
            select(User)
            .where(condition, User.kind == AccountKind.USER, User.is_active.is_(True))
            .order_by(User.lower_username)
        )
    )


def list_collaborators(
    session: Session,
    actor: Actor,
    repo: Repository,
    affiliation: CollaboratorAffiliation = "all",
    permission: Permission | None = None,
) -> list[tuple[User, Permission]]:
    """Collaborators with the permission each holds (computed by authz, so it is what they can
    really do). Needs write access, as on GitHub."""
    authorize(session, actor, repo, Permission.WRITE)
    if affiliation not in ("outside", "direct", "all"):
        raise ValidationFailed.invalid(
            "Collaborator", "affiliation", "must be outside, direct or all"
        )
    listed: list[tuple[User, Permission]] = []
    for user in _affiliated_users(session, repo, affiliation):
        held = repository_permission(session, Actor(user=user, method="system"), repo)
        if held is None or (permission is not None and held != permission):
            continue
        listed.append((user, held))
    return listed


def is_collaborator(session: Session, actor: Actor, repo: Repository, user: User) -> bool:
    authorize(session, actor, repo, Permission.WRITE)
    return any(listed.id == user.id for listed in _affiliated_users(session, repo, "all"))


def collaborator_permission(
    session: Session, actor: Actor, repo: Repository, user: User
) -> Permission | None:
    """What `user` may do on the repository (None: nothing), as the actor with write sees it."""
    authorize(session, actor, repo, Permission.WRITE)
    if not user.is_active:
        return None
    return repository_permission(session, Actor(user=user, method="system"), repo)


# Team access -----------------------------------------------------------------------------------


def set_team_permission(
    session: Session, actor: Actor, team: Team, repo: Repository, permission: Permission
) -> TeamRepository:
    """Grant a team of the owning organization access to the repository (or change it)."""
    authorize(session, actor, repo, Permission.ADMIN)
    if team.org_id != repo.owner_id:
        raise ValidationFailed.invalid(
            "Team", "repository", "must belong to the organization that owns the team"
        )
    row = session.scalar(
        select(TeamRepository).where(
            TeamRepository.team_id == team.id, TeamRepository.repository_id == repo.id
        )
    )
    if row is None:
        row = TeamRepository(team_id=team.id, repository_id=repo.id, permission=permission)
        session.add(row)
    else:
        row.permission = Permission(permission)
    session.flush()
    return row


def remove_team_permission(session: Session, actor: Actor, team: Team, repo: Repository) -> None:
    authorize(session, actor, repo, Permission.ADMIN)
    session.execute(
        delete(TeamRepository).where(
            TeamRepository.team_id == team.id, TeamRepository.repository_id == repo.id
        )
    )
    session.flush()


def team_repositories(
    session: Session, actor: Actor, team: Team, page: Page
) -> tuple[list[tuple[Repository, Permission]], int]:
    """The repositories a team has access to that the actor may see, with the team's level."""
    condition = and_(
        Repository.id.in_(
            select(TeamRepository.repository_id).where(TeamRepository.team_id == team.id)
        ),
        readable_condition(actor),
    )
    repos, total = _page_of(session, condition, "full_name", "asc", page)
    rows = session.execute(
        select(TeamRepository.repository_id, TeamRepository.permission).where(
            TeamRepository.team_id == team.id
        )
    )
    levels = {repository_id: permission for repository_id, permission in rows}
    return [(repo, levels[repo.id]) for repo in repos], total


# Listing ---------------------------------------------------------------------------------------


def readable_condition(actor: Actor) -> ColumnElement[bool]:
    """The repositories `actor` may read, as one SQL condition, so lists page in the database.

    It states `authz.effective_permission(...) is not None` row-wise; the tests check the two
    agree on every visibility, role and token scope.
    """
    public = Repository.visibility == Visibility.PUBLIC
    if actor.deploy_key_repository_id is not None:
        return Repository.id == actor.deploy_key_repository_id
    user = actor.user if actor.user is not None and actor.user.is_active else None
    if user is None:
        return public
    if actor.scopes is not None and not actor.has_scope("repo"):
        return public
    if user.is_site_admin:
        return true()
    return or_(
        public,
        Repository.visibility == Visibility.INTERNAL,
        Repository.owner_id == user.id,
        Repository.id.in_(
            select(Collaborator.repository_id).where(Collaborator.user_id == user.id)
        ),
        Repository.owner_id.in_(
            select(OrgMembership.org_id).where(OrgMembership.user_id == user.id)
        ),
        Repository.id.in_(_team_repository_ids(user)),
    )


def _team_repository_ids(user: User) -> Select[tuple[int]]:
    return (
        select(TeamRepository.repository_id)
        .join(TeamMember, TeamMember.team_id == TeamRepository.team_id)
        .where(TeamMember.user_id == user.id)
    )


SORTS = ("created", "updated", "pushed", "full_name")
DIRECTIONS = ("asc", "desc")


def _check_choice(value: str | None, allowed: tuple[str, ...], field: str) -> None:
    if value is not None and value not in allowed:
        raise ValidationFailed.invalid("Repository", field, f"must be one of {', '.join(allowed)}")


def _page_of(
    session: Session,
    condition: ColumnElement[bool],
    sort: str | None,
    direction: str | None,
    page: Page,
) -> tuple[list[Repository], int]:
    sort = sort or "full_name"
    _check_choice(sort, SORTS, "sort")
    _check_choice(direction, DIRECTIONS, "direction")
    # GitHub: ascending by name, newest first for the dates.
    descending = (direction or ("asc" if sort == "full_name" else "desc")) == "desc"
    owner = User.__table__.alias("repository_owner")
    statement = select(Repository).join(owner, owner.c.id == Repository.owner_id).where(condition)
    if sort == "full_name":
        keys: list[Any] = [owner.c.lower_username, Repository.lower_name]
    elif sort == "created":
        keys = [Repository.created_at]
    elif sort == "updated":
        keys = [Repository.updated_at]
    else:
        # NULLs sort differently per engine; a never-pushed repository counts from its creation.
        keys = [func.coalesce(Repository.pushed_at, Repository.created_at)]
    keys.append(Repository.id)
    statement = statement.order_by(*(key.desc() if descending else key.asc() for key in keys))
    total = session.scalar(select(func.count()).select_from(Repository).where(condition)) or 0
    repos = list(session.scalars(statement.offset(page.offset).limit(page.limit)))
    return repos, total


AFFILIATIONS = ("owner", "collaborator", "organization_member")


def list_for_actor(
    session: Session,
    actor: Actor,
    page: Page,
    *,
    visibility: str | None = None,
    affiliation: str | None = None,
    repo_type: str | None = None,
    sort: str | None = None,
    direction: str | None = None,
    since: datetime | None = None,
    before: datetime | None = None,
) -> tuple[list[Repository], int]:
    """`GET /user/repos`: what the signed-in user owns, collaborates on, or reaches through an
    organization, filtered as GitHub filters it."""
    user = actor.user
    if user is None:
        raise NotFound()
    if repo_type is not None and (visibility is not None or affiliation is not None):
        raise ValidationFailed.invalid(
            "Repository",
            "type",
            "If you specify visibility or affiliation, you cannot specify type.",
        )
    _check_choice(visibility, ("all", "public", "private"), "visibility")
    _check_choice(repo_type, ("all", "owner", "public", "private", "member"), "type")
    if repo_type is not None:
        affiliations = {
            "all": AFFILIATIONS,
            "owner": ("owner",),
            "public": AFFILIATIONS,
            "private": AFFILIATIONS,
            "member": ("collaborator", "organization_member"),
        }[repo_type]
        if repo_type in ("public", "private"):
            visibility = repo_type
    else:
        affiliations = tuple(
            part.strip()
            for part in (affiliation or ",".join(AFFILIATIONS)).split(",")
            if part.strip()
        )
        for part in affiliations:
            _check_choice(part, AFFILIATIONS, "affiliation")
    parts: list[ColumnElement[bool]] = []
    if "owner" in affiliations:
        parts.append(Repository.owner_id == user.id)
    if "collaborator" in affiliations:
        parts.append(
            Repository.id.in_(
                select(Collaborator.repository_id).where(Collaborator.user_id == user.id)
            )
        )
    if "organization_member" in affiliations:
        parts.append(
            Repository.owner_id.in_(
                select(OrgMembership.org_id).where(OrgMembership.user_id == user.id)
            )
        )
        parts.append(Repository.id.in_(_team_repository_ids(user)))
    condition = and_(or_(*parts) if parts else false(), readable_condition(actor))
    condition = and_(condition, _visibility_filter(visibility))
    if since is not None:
        condition = and_(condition, Repository.updated_at > since)
    if before is not None:
        condition = and_(condition, Repository.updated_at < before)
    return _page_of(session, condition, sort, direction, page)


def _visibility_filter(visibility: str | None) -> ColumnElement[bool]:
    if visibility == "public":
        return Repository.visibility == Visibility.PUBLIC
    if visibility == "private":
        return Repository.visibility != Visibility.PUBLIC
    return true()


def list_for_owner(
    session: Session,
    actor: Actor,
    owner: User,
    page: Page,
    *,
    repo_type: str | None = None,
    sort: str | None = None,
    direction: str | None = None,
) -> tuple[list[Repository], int]:
    """`GET /users/{username}/repos` and `GET /orgs/{org}/repos`: the account's repositories
    that the actor may see (only public ones for strangers)."""
    if not owner.is_active:
        raise NotFound()
    if owner.kind == AccountKind.ORGANIZATION:
        _check_choice(repo_type, ("all", "public", "private", "forks", "sources", "member"), "type")
        chosen = repo_type or "all"
        condition: ColumnElement[bool] = Repository.owner_id == owner.id
        if chosen in ("public", "private"):
            condition = and_(condition, _visibility_filter(chosen))
        elif chosen == "forks":
            condition = and_(condition, Repository.fork_parent_id.is_not(None))
        elif chosen == "sources":
            condition = and_(condition, Repository.fork_parent_id.is_(None))
        elif chosen == "member":
            user_id = actor.user.id if actor.user else -1
            condition = and_(
                condition,
                or_(
                    Repository.id.in_(
                        select(Collaborator.repository_id).where(Collaborator.user_id == user_id)
                    ),
                    Repository.id.in_(
                        select(TeamRepository.repository_id)
                        .join(TeamMember, TeamMember.team_id == TeamRepository.team_id)
                        .where(TeamMember.user_id == user_id)
                    ),
                ),
            )
    else:
        _check_choice(repo_type, ("all", "owner", "member"), "type")
        chosen = repo_type or "owner"
        owned = Repository.owner_id == owner.id
        member = or_(
            Repository.id.in_(
                select(Collaborator.repository_id).where(Collaborator.user_id == owner.id)
            ),
            Repository.owner_id.in_(
                select(OrgMembership.org_id).where(OrgMembership.user_id == owner.id)
            ),
        )
        condition = {"owner": owned, "member": member, "all": or_(owned, member)}[chosen]
    return _page_of(session, and_(condition, readable_condition(actor)), sort, direction, page)


def count_repositories(session: Session, owner: User, *, public_only: bool) -> int:
    """How many repositories `owner` has (public ones, or all): the profile's counters."""
    statement = select(func.count()).select_from(Repository).where(Repository.owner_id == owner.id)
    if public_only:
        statement = statement.where(Repository.visibility == Visibility.PUBLIC)
    return session.scalar(statement) or 0
