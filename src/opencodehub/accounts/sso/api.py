"""REST API for administering sign-in sources: `/api/v3/admin/auth-sources`.

GitHub has no such resource; the path is OpenCodeHub's own, beside GitHub Enterprise Server's
`/admin/...` routes. Site administrators only (tokens need the `admin:enterprise` scope). The
client secret is write-only: answers say `client_secret_set` and never echo it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from opencodehub.accounts.api import accepts_scopes
from opencodehub.accounts.sso import service as sso
from opencodehub.core.errors import Forbidden
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep

router = APIRouter()
PATH = "/admin/auth-sources"


class AuthSourceOut(BaseModel):
    id: int
    name: str
    slug: str
    kind: Literal["github", "gitlab", "oidc"]
    enabled: bool
    client_id: str
    client_secret_set: bool
    scopes: str
    discovery_url: str
    base_url: str
    api_url: str
    allowed_domains: list[str]
    required_group: str
    org_mapping: dict[str, str]
    created_at: str | None
    updated_at: str | None


class AuthSourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=100)
    slug: str = ""
    kind: Literal["github", "gitlab", "oidc"]
    client_id: str = Field(max_length=255)
    client_secret: str = Field(max_length=1024)
    scopes: str = ""
    discovery_url: str = ""
    base_url: str = ""
    api_url: str = ""
    enabled: bool = True
    allowed_domains: list[str] = Field(default_factory=list, max_length=100)
    required_group: str = ""
    org_mapping: dict[str, str] = Field(default_factory=dict)


class AuthSourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100)
    slug: str | None = None
    kind: Literal["github", "gitlab", "oidc"] | None = None
    client_id: str | None = Field(default=None, max_length=255)
    client_secret: str | None = Field(default=None, max_length=1024)
    scopes: str | None = None
    discovery_url: str | None = None
    base_url: str | None = None
    api_url: str | None = None
    enabled: bool | None = None
    allowed_domains: list[str] | None = Field(default=None, max_length=100)
    required_group: str | None = None
    org_mapping: dict[str, str] | None = None


def _require_admin(actor: CurrentActor) -> None:
    if not actor.is_site_admin:
        raise Forbidden("Must be a site administrator.")


@router.get(PATH, response_model=list[AuthSourceOut])
def list_sources(
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    _scopes: None = accepts_scopes("admin:enterprise"),
) -> list[dict[str, Any]]:
    _require_admin(actor)
    return [sso.source_json(source) for source in sso.list_sources(session)]


@router.post(PATH, response_model=AuthSourceOut, status_code=201)
def create_source(
    body: AuthSourceCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    _scopes: None = accepts_scopes("admin:enterprise"),
) -> dict[str, Any]:
    _require_admin(actor)
    source = sso.create_source(session, settings.secret, **body.model_dump())
    return sso.source_json(source)


@router.get(PATH + "/{source_id}", response_model=AuthSourceOut)
def get_source(
    source_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    _scopes: None = accepts_scopes("admin:enterprise"),
) -> dict[str, Any]:
    _require_admin(actor)
    return sso.source_json(sso.get_source(session, source_id))


@router.patch(PATH + "/{source_id}", response_model=AuthSourceOut)
def update_source(
    source_id: int,
    body: AuthSourceUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    _scopes: None = accepts_scopes("admin:enterprise"),
) -> dict[str, Any]:
    _require_admin(actor)
    source = sso.get_source(session, source_id)
    changes = {key: value for key, value in body.model_dump(exclude_unset=True).items()}
    # null means "leave as is", like an absent member.
    changes = {key: value for key, value in changes.items() if value is not None}
    sso.update_source(session, settings.secret, source, **changes)
    return sso.source_json(source)


@router.delete(PATH + "/{source_id}", status_code=204)
def delete_source(
    source_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    _scopes: None = accepts_scopes("admin:enterprise"),
) -> Response:
    _require_admin(actor)
    sso.delete_source(session, sso.get_source(session, source_id))
    return Response(status_code=204)
