"""Token exchange under the API and the JWKS document.

`POST /api/v3/user/tokens/jwt` is OpenCodeHub's own (GitHub has no such endpoint): it trades a
personal access token, or a signed-in browser session, for a short-lived JWT.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from opencodehub.accounts.jwt import keys
from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.accounts.security import audit
from opencodehub.core.errors import Unauthorized
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import isoformat
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.web.auth import web_session_of

router = APIRouter(tags=["jwt"])

# Served at the site root: /.well-known/jwks.json
wellknown_router = APIRouter(include_in_schema=False)


class JWTRequest(BaseModel):
    scopes: list[str] | None = Field(default=None, max_length=64)
    expires_in: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)


class JWTResponse(BaseModel):
    token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int
    expires_at: str
    scopes: list[str]
    jti: str


@router.post("/user/tokens/jwt", status_code=201, response_model=JWTResponse)
def exchange_for_jwt(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    body: Annotated[JWTRequest | None, Body()] = None,
) -> JWTResponse:
    """Exchange the calling personal access token (or browser session) for a JWT that lives at
    most an hour (`expires_in` is capped) and carries at most the caller's scopes."""
    jwt_service.bind_settings(session.get_bind(), settings)  # type: ignore[arg-type]
    if actor.user is None:
        raise Unauthorized()
    body = body or JWTRequest()
    web_session = web_session_of(request) if actor.method == "session" else None
    issued = jwt_service.issue(
        settings,
        actor,
        scopes=body.scopes,
        expires_in=body.expires_in,
        web_session_id=web_session.id if web_session is not None else None,
    )
    claims = issued.claims
    audit.record(
        session,
        actor.user,
        "jwt.issued",
        request,
        jti=claims["jti"],
        scopes=issued.scopes,
        expires_at=claims["exp"],
        via="token" if actor.method == "token" else "session",
    )
    return JWTResponse(
        token=issued.token,
        expires_in=claims["exp"] - claims["iat"],
        expires_at=isoformat(datetime.fromtimestamp(claims["exp"], UTC)) or "",
        scopes=issued.scopes,
        jti=claims["jti"],
    )


@wellknown_router.get("/.well-known/jwks.json")
def jwks(settings: SettingsDep) -> JSONResponse:
    """The public keys that verify this instance's JWTs, the retired ones still in use included."""
    return JSONResponse(
        keys.keyring(settings.data_dir).jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )
