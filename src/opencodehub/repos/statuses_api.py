"""REST API for commit statuses, in GitHub's shapes.

`POST /repos/{owner}/{repo}/statuses/{sha}` (write access), `GET .../commits/{ref}/status` (the
combined status: latest per context), `GET .../commits/{ref}/statuses` and its legacy alias
`GET .../statuses/{ref}` (every status, newest first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.accounts.schemas import SimpleUser, node_id
from opencodehub.config import Settings
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.repos import browse, service, statuses, store
from opencodehub.repos.api import redirect_moved_repository
from opencodehub.repos.models import CommitStatus, Repository
from opencodehub.repos.schemas import FullRepository, _Out, urls_for

router = APIRouter(tags=["statuses"], dependencies=[Depends(redirect_moved_repository)])

REPO = "/repos/{owner}/{repo}"
PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]


class StatusCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: str
    target_url: str | None = None
    description: str | None = None
    context: str | None = "default"


class SimpleStatus(_Out):
    url: str
    avatar_url: str | None
    id: int
    node_id: str
    state: Literal["error", "failure", "pending", "success"]
    description: str | None
    target_url: str | None
    context: str
    created_at: datetime
    updated_at: datetime


class Status(SimpleStatus):
    creator: SimpleUser | None


class CombinedStatus(_Out):
    state: Literal["failure", "pending", "success"]
    statuses: list[SimpleStatus]
    sha: str
    total_count: int
    repository: FullRepository
    commit_url: str
    url: str


def status_out(settings: Settings, repository: Repository, status: CommitStatus) -> Status:
    urls = urls_for(settings)
    return Status(
        url=f"{urls.api}/repos/{repository.full_name}/statuses/{status.sha}",
        avatar_url=urls.avatar(status.creator) if status.creator is not None else None,
        id=status.id,
        node_id=node_id("StatusContext", status.id),
        state=status.state.value,
        description=status.description,
        target_url=status.target_url,
        context=status.context,
        created_at=status.created_at,
        updated_at=status.updated_at,
        creator=SimpleUser.of(status.creator, urls) if status.creator is not None else None,
    )


def _repository(
    session: Session,
    actor: Actor,
    owner: str,
    repo: str,
    action: Permission | str = Permission.READ,
) -> Repository:
    return service.get_for(session, actor, owner, repo, action)


def _resolve_sha(settings: Settings, repository: Repository, ref: str, *, strict: bool) -> str:
    """The commit `ref` names. `strict` (POST): only an existing full sha, 422 otherwise, as
    GitHub answers; GET takes any ref, 404 when it names nothing."""
    git_repo = store.open_repository(settings, repository.id)
    try:
        if strict and not statuses.FULL_SHA_RE.match(ref.lower()):
            raise browse.RefNotFound(ref)
        commit = browse.resolve_commit(git_repo, ref.lower() if strict else ref)
    except browse.RefNotFound as exc:
        if strict:
            raise browse.Unprocessable(f"No commit found for SHA: {browse._shown(ref)}") from exc
        raise
    return str(commit.id)


@router.post(f"{REPO}/statuses/{{sha}}", response_model=Status, status_code=201)
def create_status(
    owner: str,
    repo: str,
    sha: str,
    body: StatusCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Status:
    # "statuses:write": a CI job token needs that scope of its workflow; anyone else write access.
    repository = _repository(session, actor, owner, repo, "statuses:write")
    full_sha = _resolve_sha(settings, repository, sha, strict=True)
    status = statuses.set_status(
        session,
        repository,
        full_sha,
        state=body.state,
        context=body.context,
        description=body.description,
        target_url=body.target_url,
        creator=actor,
    )
    session.refresh(status)
    out = status_out(settings, repository, status)
    response.headers["Location"] = out.url
    return out


def _list(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    owner: str,
    repo: str,
    ref: str,
    per_page: int | None,
    page: int | None,
) -> list[Status]:
    repository = _repository(session, actor, owner, repo)
    sha = _resolve_sha(settings, repository, ref, strict=False)
    paging = Page.of(page, per_page)
    rows, has_next = statuses.list_statuses(session, repository, sha, paging)
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        str(request.url.replace(query="")), params, paging, total=None, has_next=has_next
    )
    if header:
        response.headers["Link"] = header
    return [status_out(settings, repository, row) for row in rows]


@router.get(f"{REPO}/commits/{{ref:path}}/statuses", response_model=list[Status])
def list_statuses(
    owner: str,
    repo: str,
    ref: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[Status]:
    return _list(request, response, session, settings, actor, owner, repo, ref, per_page, page)


@router.get(f"{REPO}/statuses/{{ref:path}}", response_model=list[Status])
def list_statuses_legacy(
    owner: str,
    repo: str,
    ref: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[Status]:
    return _list(request, response, session, settings, actor, owner, repo, ref, per_page, page)


@router.get(f"{REPO}/commits/{{ref:path}}/status", response_model=CombinedStatus)
def combined_status(
    owner: str,
    repo: str,
    ref: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> CombinedStatus:
    repository = _repository(session, actor, owner, repo)
    sha = _resolve_sha(settings, repository, ref, strict=False)
    combined = statuses.combined_status(session, repository, sha)
    urls = urls_for(settings)
    api = f"{urls.api}/repos/{repository.full_name}"
    permission = service.permission_of(session, actor, repository) if actor.user else None
    return CombinedStatus(
        state=combined.state.value,
        statuses=[
            SimpleStatus(**status_out(settings, repository, s).model_dump(exclude={"creator"}))
            for s in combined.statuses
        ],
        sha=sha,
        total_count=combined.total_count,
        repository=FullRepository.of(repository, settings, permission),
        commit_url=f"{api}/commits/{sha}",
        url=f"{api}/commits/{sha}/status",
    )
