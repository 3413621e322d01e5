"""REST routes for repositories and their git data, in GitHub's shapes.

Repository records, collaborators, topics, transfers, deploy keys and the .gitignore/license
templates live here; branches, commits and contents in `content_api`.

Where OpenCodeHub differs from GitHub:
- `PUT /repos/{owner}/{repo}/collaborators/{username}` adds the collaborator at once (no
  invitation to accept): 201 with an invitation-shaped body for a new collaborator, 204 when
  they already were one (their permission is updated).
- `POST /repos/{owner}/{repo}/transfer` moves the repository at once to the caller's own account
  or to an organization the caller owns; transfer requests to other users do not exist.
- Renamed and transferred repositories answer on their old API URLs with a redirect to the new
  one (301 for GET and HEAD, 307 otherwise); GitHub points at `/repositories/{id}`, OpenCodeHub at
  the new `/repos/{owner}/{repo}/...` path, which `/repositories/{id}` also serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.accounts.schemas import SimpleUser, node_id
from opencodehub.config import Settings
from opencodehub.core.errors import DOCS_URL, NotFound, OCHError, ValidationFailed
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import utcnow
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep
from opencodehub.repos import service, templates
from opencodehub.repos.authz import authorize
from opencodehub.repos.models import Repository
from opencodehub.repos.schemas import (
    INVITATION_PERMISSION_NAME,
    LEGACY_PERMISSION_NAME,
    PERMISSION_FROM_NAME,
    CollaboratorOut,
    CollaboratorPermission,
    CollaboratorPut,
    DeployKey,
    DeployKeyCreate,
    FullRepository,
    GitignoreTemplate,
    License,
    LicenseSimple,
    RepositoryCreate,
    RepositoryInvitation,
    RepositoryUpdate,
    Topics,
    TransferRequest,
    full_repository,
    full_repository_json,
    license_full,
    license_simple,
    urls_for,
)

API_PREFIX = "/api/v3"
REPO = "/repos/{owner}/{repo}"

PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SortParam = Annotated[Literal["created", "updated", "pushed", "full_name"] | None, Query()]
DirectionParam = Annotated[Literal["asc", "desc"] | None, Query()]


# Renamed and transferred repositories ---------------------------------------------------------


class RepositoryMoved(OCHError):
    """An old owner/name: GitHub's redirect, with the new URL in the body too."""

    def __init__(self, url: str, *, permanent: bool) -> None:
        self.url = url
        self.status_code = 301 if permanent else 307
        super().__init__(
            "Moved Permanently" if permanent else "Temporary Redirect", headers={"Location": url}
        )

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "url": self.url, "documentation_url": DOCS_URL}


def redirect_moved_repository(
    request: Request, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> None:
    """Answer a request on a repository's old owner/name with a redirect to its new URL, when
    the caller may see the repository (anyone else gets the 404 the route would give).

    A dependency of every `/repos/{owner}/{repo}/...` route; other domains' routers with the same
    path parameters can add it too.
    """
    owner = request.path_params.get("owner")
    name = request.path_params.get("repo")
    if not isinstance(owner, str) or not isinstance(name, str):
        return
    target = service.find_redirect(session, owner, name)
    if target is None or service.permission_of(session, actor, target) is None:
        return
    path = request.url.path
    marker = f"{API_PREFIX}/repos/"
    if not path.startswith(marker):
        return
    parts = path[len(marker) :].split("/", 2)
    rest = f"/{parts[2]}" if len(parts) == 3 else ""
    url = f"{settings.effective_base_url}{marker}{target.full_name}{rest}"
    if request.url.query:
        url = f"{url}?{request.url.query}"
    raise RepositoryMoved(url, permanent=request.method in ("GET", "HEAD"))


# The routes of one repository follow it when it is renamed or transferred; the app includes
# `router`, `repo_router` and the git data routes (`content_api`, with these dependencies)
# side by side (see `app.include_api_routers`).
REPOSITORY_DEPENDENCIES = [Depends(redirect_moved_repository)]
router = APIRouter(tags=["repositories"])
repo_router = APIRouter(dependencies=REPOSITORY_DEPENDENCIES)


# Helpers ---------------------------------------------------------------------------------------


def _page(page: int | None, per_page: int | None) -> Page:
    return Page.of(page, per_page)


def _link(request: Request, response: Response, settings: Settings, page: Page, total: int) -> None:
    params = {
        key: value for key, value in request.query_params.items() if key not in ("page", "per_page")
    }
    header = link_header(
        f"{settings.effective_base_url}{request.url.path}",
        params,
        page,
        total=total,
        has_next=page.offset + page.per_page < total,
    )
    if header:
        response.headers["Link"] = header


def _repo_out(
    session: Session, settings: Settings, actor: Actor, repo: Repository
) -> FullRepository:
    return full_repository(session, settings, actor, repo)


def _one_repo(session: Session, settings: Settings, actor: Actor, repo: Repository) -> JSONResponse:
    # A dict, not the model: `parent` and `source` appear only for forks, as on GitHub.
    return JSONResponse(full_repository_json(session, settings, actor, repo))


def _repos_out(
    session: Session, settings: Settings, actor: Actor, repos: Sequence[Repository]
) -> list[FullRepository]:
    return [_repo_out(session, settings, actor, repo) for repo in repos]


def _user_or_404(session: Session, username: str) -> User:
    user = service.get_account(session, username)
    if user is None or user.is_organization or not user.is_active:
        raise NotFound()
    return user


def _org_or_404(session: Session, actor: Actor, org_name: str) -> User:
    org = service.get_account(session, org_name)
    if org is None or not org.is_organization:
        raise NotFound()
    authorize(session, actor, org, "read")
    return org


def _create(
    session: Session, settings: Settings, actor: Actor, owner: User, body: RepositoryCreate
) -> FullRepository:
    repo = service.create_repository(
        session,
        settings,
        actor,
        owner,
        body.name,
        description=body.description or "",
        homepage=body.homepage or "",
        visibility=body.chosen_visibility(),
        default_branch=body.default_branch or "main",
        auto_init=body.auto_init,
        gitignore_template=body.gitignore_template,
        license_template=body.license_template,
    )
    return _repo_out(session, settings, actor, repo)


# Creating and listing --------------------------------------------------------------------------


@router.post("/user/repos", response_model=FullRepository, status_code=201)
def create_for_user(
    body: RepositoryCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
) -> FullRepository:
    return _create(session, settings, actor, user, body)


@router.post("/orgs/{org}/repos", response_model=FullRepository, status_code=201)
def create_for_org(
    org: str,
    body: RepositoryCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
) -> FullRepository:
    return _create(session, settings, actor, _org_or_404(session, actor, org), body)


@router.get("/user/repos", response_model=list[FullRepository])
def list_own(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    visibility: Annotated[Literal["all", "public", "private"] | None, Query()] = None,
    affiliation: Annotated[str | None, Query(max_length=100)] = None,
    repo_type: Annotated[
        Literal["all", "owner", "public", "private", "member"] | None, Query(alias="type")
    ] = None,
    sort: SortParam = None,
    direction: DirectionParam = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[FullRepository]:
    chosen = _page(page, per_page)
    repos, total = service.list_for_actor(
        session,
        actor,
        chosen,
        visibility=visibility,
        affiliation=affiliation,
        repo_type=repo_type,
        sort=sort,
        direction=direction,
    )
    _link(request, response, settings, chosen, total)
    return _repos_out(session, settings, actor, repos)


@router.get("/users/{username}/repos", response_model=list[FullRepository])
def list_for_user(
    username: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repo_type: Annotated[Literal["all", "owner", "member"] | None, Query(alias="type")] = None,
    sort: SortParam = None,
    direction: DirectionParam = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[FullRepository]:
    account = service.get_account(session, username)
    if account is None:
        raise NotFound()
    authorize(session, actor, account, "read")
    chosen = _page(page, per_page)
    repos, total = service.list_for_owner(
        session,
        actor,
        account,
        chosen,
        # An organization owns everything it has: its "owner" is GitHub's "all".
        repo_type="all" if account.is_organization and repo_type == "owner" else repo_type,
        sort=sort,
        direction=direction,
    )
    _link(request, response, settings, chosen, total)
    return _repos_out(session, settings, actor, repos)


@router.get("/orgs/{org}/repos", response_model=list[FullRepository])
def list_for_org(
    org: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repo_type: Annotated[
        Literal["all", "public", "private", "forks", "sources", "member"] | None,
        Query(alias="type"),
    ] = None,
    sort: SortParam = None,
    direction: DirectionParam = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[FullRepository]:
    account = _org_or_404(session, actor, org)
    chosen = _page(page, per_page)
    repos, total = service.list_for_owner(
        session, actor, account, chosen, repo_type=repo_type, sort=sort, direction=direction
    )
    _link(request, response, settings, chosen, total)
    return _repos_out(session, settings, actor, repos)


@router.get("/repositories/{repository_id}", response_model=FullRepository)
def get_by_id(
    repository_id: RecordId, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Response:
    repo = service.get_by_id_for(session, actor, repository_id)
    return _one_repo(session, settings, actor, repo)


# One repository --------------------------------------------------------------------------------


@repo_router.get(REPO, response_model=FullRepository)
def get_repository(
    owner: str, repo: str, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Response:
    record = service.get_for(session, actor, owner, repo)
    return _one_repo(session, settings, actor, record)


@repo_router.patch(REPO, response_model=FullRepository)
def update_repository(
    owner: str,
    repo: str,
    body: RepositoryUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    record = service.get_for(session, actor, owner, repo)
    sent = body.model_fields_set
    service.update_repository(
        session,
        settings,
        actor,
        record,
        name=body.name,
        # An explicit null clears a text field, as on GitHub.
        description=(body.description or "") if "description" in sent else None,
        homepage=(body.homepage or "") if "homepage" in sent else None,
        visibility=body.chosen_visibility(),
        default_branch=body.default_branch,
        topics=body.topics,
        archived=body.archived,
    )
    merge_settings = body.merge_settings()
    if merge_settings:
        from opencodehub.pulls import service as pulls  # pulls imports the repository services

        pulls.update_merge_settings(session, actor, record, **merge_settings)
    return _one_repo(session, settings, actor, record)


@repo_router.delete(REPO, status_code=204)
def delete_repository(
    owner: str, repo: str, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Response:
    record = service.get_for(session, actor, owner, repo)
    service.delete_repository(session, settings, actor, record)
    return Response(status_code=204)


@repo_router.post(f"{REPO}/transfer", response_model=FullRepository, status_code=202)
def transfer_repository(
    owner: str,
    repo: str,
    body: TransferRequest,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> FullRepository:
    record = service.get_for(session, actor, owner, repo)
    service.transfer_repository(session, actor, record, body.new_owner, body.new_name)
    return _repo_out(session, settings, actor, record)


@repo_router.get(f"{REPO}/topics", response_model=Topics)
def get_topics(owner: str, repo: str, session: SessionDep, actor: CurrentActor) -> Topics:
    return Topics(names=service.get_for(session, actor, owner, repo).topic_list)


@repo_router.put(f"{REPO}/topics", response_model=Topics)
def replace_topics(
    owner: str,
    repo: str,
    body: Topics,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Topics:
    record = service.get_for(session, actor, owner, repo)
    service.set_topics(session, settings, actor, record, body.names)
    return Topics(names=record.topic_list)


# Collaborators ---------------------------------------------------------------------------------


@repo_router.get(f"{REPO}/collaborators", response_model=list[CollaboratorOut])
def list_collaborators(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    affiliation: Annotated[Literal["outside", "direct", "all"], Query()] = "all",
    permission: Annotated[
        Literal["pull", "triage", "push", "maintain", "admin"] | None, Query()
    ] = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[CollaboratorOut]:
    record = service.get_for(session, actor, owner, repo)
    listed = service.list_collaborators(
        session,
        actor,
        record,
        affiliation,
        PERMISSION_FROM_NAME[permission] if permission else None,
    )
    chosen = _page(page, per_page)
    _link(request, response, settings, chosen, len(listed))
    urls = urls_for(settings)
    return [
        CollaboratorOut.of_user(user, held, urls)
        for user, held in listed[chosen.offset : chosen.offset + chosen.limit]
    ]


@repo_router.get(f"{REPO}/collaborators/{{username}}", status_code=204)
def check_collaborator(
    owner: str, repo: str, username: str, session: SessionDep, actor: CurrentActor
) -> Response:
    record = service.get_for(session, actor, owner, repo)
    user = _user_or_404(session, username)
    if not service.is_collaborator(session, actor, record, user):
        raise NotFound()
    return Response(status_code=204)


@repo_router.put(
    f"{REPO}/collaborators/{{username}}",
    status_code=201,
    response_model=RepositoryInvitation,
    responses={204: {"description": "The user already was a collaborator; permission updated"}},
)
def add_collaborator(
    owner: str,
    repo: str,
    username: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    body: Annotated[CollaboratorPut | None, Body()] = None,
) -> Response:
    record = service.get_for(session, actor, owner, repo)
    user = _user_or_404(session, username)
    word = (body or CollaboratorPut()).permission
    permission = PERMISSION_FROM_NAME.get(word)
    if permission is None:
        raise ValidationFailed.invalid(
            "Collaborator", "permission", "must be pull, triage, push, maintain or admin"
        )
    row, created = service.add_collaborator(session, actor, record, user, permission)
    if not created:
        return Response(status_code=204)
    urls = urls_for(settings)
    inviter = actor.user if actor.user is not None else record.owner
    invitation = RepositoryInvitation(
        id=row.id,
        node_id=node_id("RepositoryInvitation", row.id),
        repository=_repo_out(session, settings, actor, record),
        invitee=SimpleUser.of(user, urls),
        inviter=SimpleUser.of(inviter, urls),
        permissions=INVITATION_PERMISSION_NAME[permission],  # type: ignore[arg-type]
        created_at=row.created_at or utcnow(),
        url=f"{urls.api}/repos/{record.full_name}/collaborators/{user.username}",
        html_url=urls.html(f"{record.full_name}/settings/access"),
    )
    return JSONResponse(invitation.model_dump(mode="json"), status_code=201)


@repo_router.delete(f"{REPO}/collaborators/{{username}}", status_code=204)
def remove_collaborator(
    owner: str, repo: str, username: str, session: SessionDep, actor: CurrentActor
) -> Response:
    record = service.get_for(session, actor, owner, repo)
    user = _user_or_404(session, username)
    service.remove_collaborator(session, actor, record, user)
    return Response(status_code=204)


@repo_router.get(
    f"{REPO}/collaborators/{{username}}/permission", response_model=CollaboratorPermission
)
def collaborator_permission(
    owner: str,
    repo: str,
    username: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> CollaboratorPermission:
    record = service.get_for(session, actor, owner, repo)
    user = _user_or_404(session, username)
    held = service.collaborator_permission(session, actor, record, user)
    urls = urls_for(settings)
    if held is None:
        return CollaboratorPermission(permission="none", role_name="none", user=None)
    return CollaboratorPermission(
        permission=LEGACY_PERMISSION_NAME[held],  # type: ignore[arg-type]
        role_name=held.value,
        user=CollaboratorOut.of_user(user, held, urls),
    )


# Deploy keys -----------------------------------------------------------------------------------


@repo_router.get(f"{REPO}/keys", response_model=list[DeployKey])
def list_deploy_keys(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[DeployKey]:
    record = service.get_for(session, actor, owner, repo, "admin")
    keys = accounts.list_deploy_keys(session, record)
    chosen = _page(page, per_page)
    _link(request, response, settings, chosen, len(keys))
    urls = urls_for(settings)
    return [
        DeployKey.of(key, record, urls)
        for key in keys[chosen.offset : chosen.offset + chosen.limit]
    ]


@repo_router.post(f"{REPO}/keys", response_model=DeployKey, status_code=201)
def add_deploy_key(
    owner: str,
    repo: str,
    body: DeployKeyCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> DeployKey:
    record = service.get_for(session, actor, owner, repo, "admin")
    key = accounts.add_deploy_key(session, record, body.title, body.key, read_only=body.read_only)
    return DeployKey.of(key, record, urls_for(settings))


@repo_router.get(f"{REPO}/keys/{{key_id}}", response_model=DeployKey)
def get_deploy_key(
    owner: str,
    repo: str,
    key_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> DeployKey:
    record = service.get_for(session, actor, owner, repo, "admin")
    return DeployKey.of(
        accounts.get_deploy_key(session, record, key_id), record, urls_for(settings)
    )


@repo_router.delete(f"{REPO}/keys/{{key_id}}", status_code=204)
def delete_deploy_key(
    owner: str, repo: str, key_id: RecordId, session: SessionDep, actor: CurrentActor
) -> Response:
    record = service.get_for(session, actor, owner, repo, "admin")
    accounts.delete_deploy_key(session, record, key_id)
    return Response(status_code=204)


# Templates -------------------------------------------------------------------------------------


@router.get("/gitignore/templates", response_model=list[str])
def gitignore_templates() -> list[str]:
    return list(templates.GITIGNORE_TEMPLATES)


@router.get("/gitignore/templates/{name}", response_model=GitignoreTemplate)
def gitignore_template(name: str) -> GitignoreTemplate:
    canonical = templates.find_gitignore(name)
    source = templates.gitignore_source(name)
    if canonical is None or source is None:
        raise NotFound()
    return GitignoreTemplate(name=canonical, source=source)


@router.get("/licenses", response_model=list[LicenseSimple])
def licenses(settings: SettingsDep, featured: bool | None = None) -> list[LicenseSimple]:
    urls = urls_for(settings)
    return [
        license_simple(template, urls)
        for template in sorted(templates.LICENSES.values(), key=lambda item: item.key)
        if featured is None or template.featured == featured
    ]


@router.get("/licenses/{license_key}", response_model=License)
def license_detail(license_key: str, settings: SettingsDep) -> License:
    template = templates.find_license(license_key)
    if template is None:
        raise NotFound()
    return license_full(template, urls_for(settings))
