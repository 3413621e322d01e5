"""REST API for forks, in GitHub's shapes: `POST/GET /repos/{o}/{r}/forks` and
`POST /repos/{o}/{r}/merge-upstream` (sync a fork's branch with its parent)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.config import Settings
from opencodehub.core.errors import ValidationFailed
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep
from opencodehub.repos import forks, service
from opencodehub.repos.api import redirect_moved_repository
from opencodehub.repos.models import Repository
from opencodehub.repos.schemas import full_repository_json

router = APIRouter(tags=["forks"], dependencies=[Depends(redirect_moved_repository)])

REPO = "/repos/{owner}/{repo}"


class ForkCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    organization: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, max_length=100)
    default_branch_only: bool = False


class MergeUpstream(BaseModel):
    model_config = ConfigDict(extra="ignore")

    branch: str = Field(min_length=1, max_length=255)


def fork_json(
    session: Session, settings: Settings, actor: Actor, repository: Repository
) -> dict[str, Any]:
    """The repository's JSON with GitHub's `parent` and `source` for a fork (each shown only
    to a caller who may read it), as `GET /repos/{o}/{r}` answers it."""
    return dict(full_repository_json(session, settings, actor, repository))


@router.post(f"{REPO}/forks", status_code=202)
def create_fork(
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    body: ForkCreate | None = None,
) -> JSONResponse:
    forks.remember_settings(settings)
    parent = service.get_for(session, actor, owner, repo)
    body = body or ForkCreate()
    target = None
    if body.organization:
        target = service.get_account(session, body.organization)
        if target is None or not target.is_organization:
            raise ValidationFailed.invalid("Fork", "organization", "is not an organization")
    fork = forks.fork_repository(
        session,
        settings,
        actor,
        parent,
        owner=target,
        name=body.name,
        default_branch_only=body.default_branch_only,
    )
    session.flush()
    return JSONResponse(fork_json(session, settings, actor, fork), status_code=202)


@router.get(f"{REPO}/forks")
def list_forks(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    sort: Annotated[Literal["newest", "oldest", "stargazers", "watchers"], Query()] = "newest",
    page: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    per_page: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> list[dict[str, Any]]:
    forks.remember_settings(settings)
    repository = service.get_for(session, actor, owner, repo)
    chosen = Page.of(page, per_page)
    found, total = forks.list_forks(session, actor, repository, chosen, sort)
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        f"{settings.effective_base_url}{request.url.path}",
        params,
        chosen,
        total=total,
        has_next=chosen.offset + chosen.per_page < total,
    )
    if header:
        response.headers["Link"] = header
    return [fork_json(session, settings, actor, fork) for fork in found]


@router.post(f"{REPO}/merge-upstream")
def merge_upstream(
    owner: str,
    repo: str,
    body: MergeUpstream,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
) -> dict[str, str]:
    fork = service.get_for(session, actor, owner, repo)
    result = forks.sync_branch(
        session,
        settings,
        actor,
        fork,
        body.branch,
        events=getattr(request.app.state, "events", None),
    )
    return {
        "message": result.message,
        "merge_type": result.merge_type,
        "base_branch": result.base_branch,
    }
