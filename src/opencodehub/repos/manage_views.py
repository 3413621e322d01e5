"""HTML routes that create and manage repositories: the new-repository form, a repository's
settings (rename, description, homepage, topics, visibility, default branch, archive, transfer,
delete) and its access page (collaborators and teams).

Routes are thin: parse the form, call `repos.service`, render. Only a repository's admins see
its settings: a caller who cannot read it gets the same 404 as for a repository that does not
exist, a reader gets 403. An old name (after a rename or a transfer) answers 301 (307 for a
POST) to the new one, once the caller is known to be an admin of it. Every POST is
CSRF-protected; a service's `ValidationFailed` shows the form again with the field's message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import AccountKind, Permission, Team, User
from opencodehub.accounts.security.sudo import RequireSudo
from opencodehub.config import Settings
from opencodehub.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.lfs.service import repository_lfs_objects
from opencodehub.repos import browse, listing, templates
from opencodehub.repos import service as repos
from opencodehub.repos.authz import authorize, can
from opencodehub.repos.models import Repository, Visibility
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.templating import field_errors, render

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
OptionalFormStr = Annotated[str | None, Form()]

PERMISSIONS = [permission.value for permission in Permission]
_TOPIC_SEPARATORS = re.compile(r"[\s,]+")
# Form values are cut to this before they are echoed back into a re-rendered form.
_ECHO_LIMIT = 2000


def _lookup_safe(value: str) -> bool:
    """Whether a name from a form or a path may be looked up at all (no control characters,
    which PostgreSQL refuses outright, and nothing longer than any name could be)."""
    return 0 < len(value) <= 254 and not any(ord(char) < 0x20 for char in value)


def _invalid(session: Session, exc: ValidationFailed) -> dict[str, Any]:
    """Undo anything the failed call flushed; the form is shown again with the messages."""
    session.rollback()
    return {"errors": field_errors(exc), "error": exc.describe(), "status": 422}


def _refused(session: Session, exc: Forbidden) -> dict[str, Any]:
    session.rollback()
    return {"errors": {}, "error": exc.message, "status": 403}


def _parse_permission(value: str, resource: str) -> Permission:
    try:
        return Permission(value)
    except ValueError:
        raise ValidationFailed.invalid(
            resource, "permission", "must be read, triage, write, maintain or admin"
        ) from None


def _repo_path(repo: Repository, suffix: str = "") -> str:
    return f"/{repo.owner.username}/{repo.name}{suffix}"


# New repository -------------------------------------------------------------------------------


def _owner_choices(session: Session, actor: Actor, user: User) -> list[User]:
    """Where the user may create a repository: its own account and its organizations."""
    orgs = [
        org for org in accounts.list_user_orgs(session, user) if can(session, actor, org, "member")
    ]
    return [user, *orgs]


def _new_page(
    request: Request, session: Session, actor: Actor, user: User, **context: Any
) -> Response:
    return render(
        request,
        "repos_manage/new.html",
        page_title="New repository",
        owners=_owner_choices(session, actor, user),
        gitignore_templates=templates.GITIGNORE_TEMPLATES,
        licenses=sorted(templates.LICENSES.values(), key=lambda license_: license_.name),
        form=context.pop("form", {"owner": user.username, "visibility": "public"}),
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=context.pop("status", 200),
        **context,
    )


@router.get("/new")
def new_repository_form(
    request: Request, user: WebUser, actor: CurrentActor, session: SessionDep, owner: str = ""
) -> Response:
    form = {"owner": owner[:39] or user.username, "visibility": "public"}
    return _new_page(request, session, actor, user, form=form)


def _parse_visibility(value: str) -> Visibility:
    try:
        return Visibility(value)
    except ValueError:
        raise ValidationFailed.invalid(
            "Repository", "visibility", "must be public, private or internal"
        ) from None


def _checked(value: str) -> bool:
    return value.lower() in ("on", "1", "true", "yes")


@router.post("/new")
def new_repository(
    request: Request,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
    owner: FormStr = "",
    name: FormStr = "",
    description: FormStr = "",
    visibility: FormStr = "public",
    auto_init: FormStr = "",
    gitignore_template: FormStr = "",
    license_template: FormStr = "",
) -> Response:
    form = {
        "owner": owner[:39],
        "name": name[:_ECHO_LIMIT],
        "description": description[:_ECHO_LIMIT],
        "visibility": visibility[:20],
        "auto_init": _checked(auto_init),
        "gitignore_template": gitignore_template[:50],
        "license_template": license_template[:50],
    }
    choices = {account.lower_username: account for account in _owner_choices(session, actor, user)}
    chosen_owner = choices.get(owner.strip().lower()) if _lookup_safe(owner) else None
    try:
        if chosen_owner is None:
            raise ValidationFailed.invalid(
                "Repository", "owner", "choose your account or one of your organizations"
            )
        repo = repos.create_repository(
            session,
            config,
            actor,
            chosen_owner,
            name.strip(),
            description=description,
            visibility=_parse_visibility(visibility),
            auto_init=_checked(auto_init),
            gitignore_template=gitignore_template or None,
            license_template=license_template or None,
        )
    except ValidationFailed as exc:
        return _new_page(request, session, actor, user, form=form, **_invalid(session, exc))
    except Forbidden as exc:
        return _new_page(request, session, actor, user, form=form, **_refused(session, exc))
    return flash.redirect(request, _repo_path(repo), f"Repository {repo.full_name} was created.")


# Finding the repository an admin manages -------------------------------------------------------


def _managed(
    request: Request, session: Session, actor: Actor, owner: str, name: str, suffix: str
) -> Repository | RedirectResponse:
    """The repository, if the actor administers it; for an old name, the redirect to the new
    one (after the check, so an old name leaks nothing to whoever may not manage it)."""
    located = repos.locate(session, owner, name)
    if located is None:
        raise NotFound()
    authorize(session, actor, located.repository, Permission.ADMIN)
    if located.redirected:
        status = 301 if request.method in ("GET", "HEAD") else 307
        return RedirectResponse(_repo_path(located.repository, suffix), status_code=status)
    return located.repository


def _branch_names(config: Settings, repo: Repository) -> list[str]:
    if repo.is_empty:
        return []
    git_repo = browse.open_repository(config, repo.id)
    return [branch.name for branch in browse.list_branches(git_repo)]


def _visibility_choices(repo: Repository) -> list[str]:
    choices = [Visibility.PUBLIC.value, Visibility.PRIVATE.value]
    if repo.owner.kind == AccountKind.ORGANIZATION:
        choices.append(Visibility.INTERNAL.value)
    return choices


def _general_form(repo: Repository) -> dict[str, Any]:
    return {
        "name": repo.name,
        "description": repo.description,
        "homepage": repo.homepage,
        "topics": " ".join(repo.topic_list),
        "default_branch": repo.default_branch,
    }


def _settings_page(
    request: Request,
    session: Session,
    config: Settings,
    actor: Actor,
    repo: Repository,
    *,
    section: str = "",
    **context: Any,
) -> Response:
    form = context.pop("form", {})
    return render(
        request,
        "repos_manage/settings.html",
        page_title=f"Settings · {repo.owner.username}/{repo.name}",
        repo=repo,
        settings_tab="general",
        branches=_branch_names(config, repo),
        visibilities=_visibility_choices(repo),
        section=section,
        form={**_general_form(repo), **form} if section in ("", "general") else _general_form(repo),
        section_form=form,
        lfs_usage=repository_lfs_objects(session, repo),
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=context.pop("status", 200),
        **context,
    )


@router.get("/{owner}/{repo_name}/settings")
def repository_settings(
    request: Request,
    owner: str,
    repo_name: str,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings")
    if isinstance(repo, RedirectResponse):
        return repo
    return _settings_page(request, session, config, actor, repo)


def _topics(value: str) -> list[str]:
    return [topic for topic in _TOPIC_SEPARATORS.split(value) if topic]


@router.post("/{owner}/{repo_name}/settings")
def repository_settings_update(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
    name: OptionalFormStr = None,
    description: OptionalFormStr = None,
    homepage: OptionalFormStr = None,
    topics: OptionalFormStr = None,
    default_branch: OptionalFormStr = None,
) -> Response:
    """The general settings; a field the form did not send (disabled while the repository is
    archived) stays as it is."""
    repo = _managed(request, session, actor, owner, repo_name, "/settings")
    if isinstance(repo, RedirectResponse):
        return repo
    submitted = {
        "name": name,
        "description": description,
        "homepage": homepage,
        "topics": topics,
        "default_branch": default_branch,
    }
    form = {key: value[:_ECHO_LIMIT] for key, value in submitted.items() if value is not None}
    try:
        repos.update_repository(
            session,
            config,
            actor,
            repo,
            name=name.strip() if name is not None else None,
            description=description,
            homepage=homepage.strip() if homepage is not None else None,
            topics=_topics(topics) if topics is not None else None,
            default_branch=default_branch.strip() or None if default_branch is not None else None,
        )
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _settings_page(
            request, session, config, actor, repo, section="general", form=form, **context
        )
    except Forbidden as exc:
        context = _refused(session, exc)
        return _settings_page(
            request, session, config, actor, repo, section="general", form=form, **context
        )
    return flash.redirect(request, _repo_path(repo, "/settings"), "Repository settings saved.")


@router.post("/{owner}/{repo_name}/settings/visibility")
def repository_visibility(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
    visibility: FormStr = "",
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/visibility")
    if isinstance(repo, RedirectResponse):
        return repo
    try:
        repos.update_repository(session, config, actor, repo, visibility=visibility)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _settings_page(
            request, session, config, actor, repo, section="visibility", **context
        )
    return flash.redirect(
        request, _repo_path(repo, "/settings"), f"The repository is now {repo.visibility.value}."
    )


@router.post("/{owner}/{repo_name}/settings/archive")
def repository_archive(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
    archived: FormStr = "",
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/archive")
    if isinstance(repo, RedirectResponse):
        return repo
    archive = _checked(archived)
    repos.archive_repository(session, config, actor, repo, archive)
    message = (
        "The repository was archived: it is now read-only."
        if archive
        else ("The repository was unarchived.")
    )
    return flash.redirect(request, _repo_path(repo, "/settings"), message)


def _confirmation_error(repo: Repository, resource: str) -> ValidationFailed:
    return ValidationFailed(
        FieldError(
            resource,
            "confirm",
            "invalid",
            f"type {repo.owner.username}/{repo.name} exactly to confirm",
        )
    )


@router.post("/{owner}/{repo_name}/settings/transfer")
def repository_transfer(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
    new_owner: FormStr = "",
    confirm: FormStr = "",
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/transfer")
    if isinstance(repo, RedirectResponse):
        return repo
    form = {"new_owner": new_owner[:39]}
    previous = f"{repo.owner.username}/{repo.name}"
    try:
        if confirm != previous:
            raise _confirmation_error(repo, "Repository")
        target = new_owner.strip()
        if not _lookup_safe(target):
            raise ValidationFailed.invalid(
                "Repository", "new_owner", "is not an existing user or organization"
            )
        repos.transfer_repository(session, actor, repo, target)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _settings_page(
            request, session, config, actor, repo, section="transfer", form=form, **context
        )
    except Forbidden as exc:
        context = _refused(session, exc)
        return _settings_page(
            request, session, config, actor, repo, section="transfer", form=form, **context
        )
    return flash.redirect(
        request, _repo_path(repo), f"{previous} was transferred to {repo.owner.username}."
    )


@router.post("/{owner}/{repo_name}/settings/delete")
def repository_delete(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: RequireSudo,  # deleting a repository needs sudo mode
    actor: CurrentActor,
    session: SessionDep,
    config: SettingsDep,
    confirm: FormStr = "",
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/delete")
    if isinstance(repo, RedirectResponse):
        return repo
    full_name = f"{repo.owner.username}/{repo.name}"
    if confirm != full_name:
        context = _invalid(session, _confirmation_error(repo, "Repository"))
        return _settings_page(request, session, config, actor, repo, section="delete", **context)
    repos.delete_repository(session, config, actor, repo)
    return flash.redirect(request, "/", f"Repository {full_name} was deleted.")


# Access: collaborators and teams ---------------------------------------------------------------


def _access_page(
    request: Request, session: Session, actor: Actor, repo: Repository, **context: Any
) -> Response:
    is_org = repo.owner.kind == AccountKind.ORGANIZATION
    granted = listing.repository_teams(session, actor, repo) if is_org else []
    granted_ids = {team.id for team, _ in granted}
    available = (
        [team for team in accounts.list_teams(session, repo.owner) if team.id not in granted_ids]
        if is_org
        else []
    )
    return render(
        request,
        "repos_manage/access.html",
        page_title=f"Collaborators and teams · {repo.owner.username}/{repo.name}",
        repo=repo,
        settings_tab="access",
        is_org=is_org,
        collaborators=repos.list_collaborators(session, actor, repo, "direct"),
        teams=granted,
        available_teams=available,
        permissions=PERMISSIONS,
        section=context.pop("section", ""),
        form=context.pop("form", {"permission": "write"}),
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=context.pop("status", 200),
        **context,
    )


@router.get("/{owner}/{repo_name}/settings/access")
def repository_access(
    request: Request,
    owner: str,
    repo_name: str,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/access")
    if isinstance(repo, RedirectResponse):
        return repo
    return _access_page(request, session, actor, repo)


def _user_named(session: Session, username: str) -> User:
    username = username.strip()
    found = accounts.get_user(session, username) if _lookup_safe(username) else None
    if found is None:
        raise ValidationFailed.invalid(
            "Collaborator", "username", f"there is no user named '{username[:60]}'"
        )
    return found


def _access_path(repo: Repository) -> str:
    return _repo_path(repo, "/settings/access")


@router.post("/{owner}/{repo_name}/settings/access/collaborators")
def collaborator_add(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    username: FormStr = "",
    permission: FormStr = "write",
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/access/collaborators")
    if isinstance(repo, RedirectResponse):
        return repo
    form = {"username": username[:60], "permission": permission[:20]}
    try:
        collaborator = _user_named(session, username)
        level = _parse_permission(permission, "Collaborator")
        _, created = repos.add_collaborator(session, actor, repo, collaborator, level)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _access_page(
            request, session, actor, repo, section="collaborator", form=form, **context
        )
    verb = "was added with" if created else "now has"
    return flash.redirect(
        request, _access_path(repo), f"{collaborator.username} {verb} {level.value} access."
    )


def _existing_user(session: Session, username: str) -> User:
    found = accounts.get_user(session, username) if _lookup_safe(username) else None
    if found is None:
        raise NotFound()
    return found


@router.post("/{owner}/{repo_name}/settings/access/collaborators/{username}")
def collaborator_change(
    request: Request,
    owner: str,
    repo_name: str,
    username: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    permission: FormStr = "",
) -> Response:
    suffix = f"/settings/access/collaborators/{quote(username, safe='')}"
    repo = _managed(request, session, actor, owner, repo_name, suffix)
    if isinstance(repo, RedirectResponse):
        return repo
    collaborator = _existing_user(session, username)
    try:
        level = _parse_permission(permission, "Collaborator")
        repos.add_collaborator(session, actor, repo, collaborator, level)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _access_page(request, session, actor, repo, section="collaborators", **context)
    return flash.redirect(
        request, _access_path(repo), f"{collaborator.username} now has {level.value} access."
    )


@router.post("/{owner}/{repo_name}/settings/access/collaborators/{username}/remove")
def collaborator_remove(
    request: Request,
    owner: str,
    repo_name: str,
    username: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    suffix = f"/settings/access/collaborators/{quote(username, safe='')}/remove"
    repo = _managed(request, session, actor, owner, repo_name, suffix)
    if isinstance(repo, RedirectResponse):
        return repo
    collaborator = _existing_user(session, username)
    repos.remove_collaborator(session, actor, repo, collaborator)
    return flash.redirect(
        request, _access_path(repo), f"{collaborator.username} no longer has direct access."
    )


def _org_team(session: Session, repo: Repository, slug: str) -> Team | None:
    """A team of the organization that owns the repository (None for a personal one)."""
    slug = slug.strip()
    if repo.owner.kind != AccountKind.ORGANIZATION or not _lookup_safe(slug):
        return None
    return accounts.get_team(session, repo.owner, slug)


@router.post("/{owner}/{repo_name}/settings/access/teams")
def team_grant(
    request: Request,
    owner: str,
    repo_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    team: FormStr = "",
    permission: FormStr = "read",
) -> Response:
    repo = _managed(request, session, actor, owner, repo_name, "/settings/access/teams")
    if isinstance(repo, RedirectResponse):
        return repo
    form = {"team": team[:100], "team_permission": permission[:20]}
    try:
        found = _org_team(session, repo, team)
        if found is None:
            raise ValidationFailed.invalid(
                "Team", "team", f"choose a team of {repo.owner.username}"
            )
        level = _parse_permission(permission, "Team")
        repos.set_team_permission(session, actor, found, repo, level)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _access_page(request, session, actor, repo, section="team", form=form, **context)
    return flash.redirect(
        request, _access_path(repo), f"Team {found.name} now has {level.value} access."
    )


@router.post("/{owner}/{repo_name}/settings/access/teams/{team_slug}/remove")
def team_revoke(
    request: Request,
    owner: str,
    repo_name: str,
    team_slug: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    suffix = f"/settings/access/teams/{quote(team_slug, safe='')}/remove"
    repo = _managed(request, session, actor, owner, repo_name, suffix)
    if isinstance(repo, RedirectResponse):
        return repo
    found = _org_team(session, repo, team_slug)
    if found is None:
        raise NotFound()
    repos.remove_team_permission(session, actor, found, repo)
    return flash.redirect(request, _access_path(repo), f"Team {found.name} no longer has access.")
