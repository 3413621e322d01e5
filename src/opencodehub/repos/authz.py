"""The one permission decision: `authorize(session, actor, resource, action)`.

Every route, transport and service asks here; no permission logic lives anywhere else. A caller
that may not see a resource gets `NotFound`, never `Forbidden`, so existence does not leak. A
caller that may see it but not act on it gets `Forbidden`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import (
    AccountKind,
    OrgMembership,
    OrgRole,
    Permission,
    Team,
    TeamMember,
    User,
)
from opencodehub.core.errors import Forbidden, NotFound
from opencodehub.repos.models import Collaborator, Repository, TeamRepository, Visibility

# Members of an organization read its repositories (GitHub's default base permission).
ORG_MEMBER_BASE_PERMISSION = Permission.READ

# Organization actions: "read" (see it), "member" (see members-only things), "admin" (owner).
ORG_ACTIONS = ("read", "member", "admin")


def org_role(session: Session, org: User, user: User | None) -> OrgRole | None:
    if user is None:
        return None
    return session.scalar(
        select(OrgMembership.role).where(
            OrgMembership.org_id == org.id, OrgMembership.user_id == user.id
        )
    )


def repository_permission(session: Session, actor: Actor, repo: Repository) -> Permission | None:
    """The strongest permission the actor holds on the repository, before token scopes."""
    if actor.deploy_key_repository_id is not None:
        if actor.deploy_key_repository_id != repo.id:
            return None
        return Permission.READ if actor.deploy_key_read_only else Permission.WRITE
    if actor.job_repository_id is not None:
        # A CI job token: its own repository at the workflow's `contents` permission; any other
        # repository only as an anonymous caller would see it.
        if actor.job_repository_id != repo.id:
            return Permission.READ if repo.visibility == Visibility.PUBLIC else None
        level = actor.job_permission("contents")
        if level == "write":
            return Permission.WRITE
        public = repo.visibility == Visibility.PUBLIC
        return Permission.READ if level == "read" or public else None

    user = actor.user if actor.user is not None and actor.user.is_active else None
    granted: list[Permission] = []
    if repo.visibility == Visibility.PUBLIC:
        granted.append(Permission.READ)
    if user is not None:
        if user.is_site_admin:
            return Permission.ADMIN
        if repo.owner_id == user.id:
            return Permission.ADMIN
        if repo.visibility == Visibility.INTERNAL:
            granted.append(Permission.READ)
        collaborator = session.scalar(
            select(Collaborator.permission).where(
                Collaborator.repository_id == repo.id, Collaborator.user_id == user.id
            )
        )
        if collaborator is not None:
            granted.append(collaborator)
        if repo.owner.kind == AccountKind.ORGANIZATION:
            role = org_role(session, repo.owner, user)
            if role == OrgRole.OWNER:
                return Permission.ADMIN
            if role == OrgRole.MEMBER:
                granted.append(ORG_MEMBER_BASE_PERMISSION)
            team_permissions = session.scalars(
                select(TeamRepository.permission)
                .join(Team, Team.id == TeamRepository.team_id)
                .join(TeamMember, TeamMember.team_id == Team.id)
                .where(TeamRepository.repository_id == repo.id, TeamMember.user_id == user.id)
            ).all()
            granted.extend(team_permissions)
    return max(granted, key=lambda permission: permission.rank) if granted else None


def _token_allows(actor: Actor, repo: Repository, needed: Permission) -> bool:
    """Classic PAT scopes: `repo` for private repositories and for every write, `public_repo`
    for writes to public ones. Reading public data needs no scope."""
    if actor.scopes is None:
        return True
    # A CI job token carries no PAT scope: its `permissions` already decided in
    # repository_permission() (see actions/tokens.py).
    if actor.job_repository_id is not None:
        return True
    if actor.has_scope("repo"):
        return True
    if repo.visibility != Visibility.PUBLIC:
        return False
    return needed == Permission.READ or actor.has_scope("public_repo")


def effective_permission(session: Session, actor: Actor, repo: Repository) -> Permission | None:
    permission = repository_permission(session, actor, repo)
    if permission is None:
        return None
    if not _token_allows(actor, repo, Permission.READ):
        return None
    if permission > Permission.READ and not _token_allows(actor, repo, permission):
        return Permission.READ
    return permission


# GitHub's `permissions` scopes that routes may name as `"<scope>:write"` actions: a CI job
# token needs that scope of its workflow's `permissions`; anyone else the permission here.
SCOPED_ACTIONS = {
    "statuses:write": Permission.WRITE,
    "issues:write": Permission.READ,
    "pull-requests:write": Permission.READ,
}


def authorize_repository(
    session: Session, actor: Actor, repo: Repository, action: Permission | str
) -> Permission:
    if isinstance(action, str) and action in SCOPED_ACTIONS:
        if actor.job_repository_id is None:
            return authorize_repository(session, actor, repo, SCOPED_ACTIONS[action])
        permission = effective_permission(session, actor, repo)
        if permission is None:
            raise NotFound()
        if (
            actor.job_repository_id != repo.id
            or actor.job_permission(action.split(":", 1)[0]) != "write"
        ):
            raise Forbidden("Resource not accessible by integration")
        return permission
    needed = Permission(action)
    permission = effective_permission(session, actor, repo)
    if permission is None:
        raise NotFound()
    if permission < needed:
        raise Forbidden(
            "Must have admin rights to Repository."
            if needed == Permission.ADMIN
            else f"Permission to {repo.full_name} denied to "
            f"{actor.user.username if actor.user else 'anonymous'}."
        )
    return permission


def authorize_organization(session: Session, actor: Actor, org: User, action: str) -> None:
    if action not in ORG_ACTIONS:
        raise ValueError(f"unknown organization action {action!r}")
    if not org.is_active:
        raise NotFound()
    if action == "read":
        return
    # The scope narrows site admins' tokens too, so it is checked before their shortcut.
    if action == "admin" and actor.scopes is not None and not actor.has_scope("admin:org"):
        raise Forbidden("The token lacks the admin:org scope.")
    if actor.is_site_admin:
        return
    role = org_role(session, org, actor.user)
    if role is None:
        raise NotFound() if action == "member" else Forbidden("You must be an organization owner.")
    if action == "admin" and role != OrgRole.OWNER:
        raise Forbidden("You must be an organization owner.")


def authorize_user(actor: Actor, user: User, action: str) -> None:
    """`read` anyone active; `admin` oneself or a site admin (token needs `user`)."""
    if not user.is_active and not actor.is_site_admin:
        raise NotFound()
    if action == "read":
        return
    if action != "admin":
        raise ValueError(f"unknown user action {action!r}")
    if actor.user is None:
        raise NotFound()
    if actor.user.id != user.id and not actor.is_site_admin:
        raise Forbidden()
    if actor.scopes is not None and not actor.has_scope("user"):
        raise Forbidden("The token lacks the user scope.")


def authorize(
    session: Session, actor: Actor, resource: Repository | User, action: Permission | str
) -> Permission | None:
    """Raise NotFound or Forbidden unless `actor` may do `action` on `resource`.

    Repositories take GitHub's permission levels (read, triage, write, maintain, admin) and return
    the actor's effective permission; organizations take read, member, admin; users read, admin.
    """
    if isinstance(resource, Repository):
        return authorize_repository(session, actor, resource, action)
    if isinstance(resource, User) and resource.kind == AccountKind.ORGANIZATION:
        authorize_organization(session, actor, resource, str(action))
        return None
    if isinstance(resource, User):
        authorize_user(actor, resource, str(action))
        return None
    raise TypeError(f"authorize() does not know {type(resource).__name__}")


def can(
    session: Session, actor: Actor, resource: Repository | User, action: Permission | str
) -> bool:
    try:
        authorize(session, actor, resource, action)
    except (NotFound, Forbidden):
        return False
    return True
