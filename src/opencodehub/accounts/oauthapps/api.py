"""GitHub's app-authenticated routes for OAuth apps: `DELETE /applications/{client_id}/grant`
and `DELETE /applications/{client_id}/token`, called with HTTP Basic client id and secret.

They live on `client_router`, which the site-root views router includes: the API router's
shared dependencies would read the Basic credentials as a user's password and refuse them.
`router` (under /api/v3) is kept for routes that act for a user.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import Body, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from opencodehub.accounts.oauthapps import service as oauth
from opencodehub.accounts.oauthapps.models import OAuthApp
from opencodehub.core.errors import FieldError, NotFound, Unauthorized, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import SessionDep

router = APIRouter()
client_router = APIRouter(prefix="/api/v3", tags=["oauth-apps"])


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) from `Authorization: Basic`; RFC 6749 §2.3.1 form-encodes
    both before joining them, so they are decoded again here."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def _client(session: Session, request: Request, client_id: str) -> OAuthApp:
    credentials = basic_credentials(request.headers.get("authorization", ""))
    if credentials is None:
        raise Unauthorized("Requires authentication", headers={"WWW-Authenticate": "Basic"})
    if credentials[0] != client_id:
        raise NotFound()
    try:
        return oauth.authenticate_client(session, credentials[0], credentials[1])
    except oauth.OAuthError:
        raise NotFound() from None


def _token_of(payload: dict[str, object]) -> str:
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise ValidationFailed(
            FieldError("OauthAccess", "access_token", "missing_field", "access_token is required")
        )
    return token


def _invalid_token() -> ValidationFailed:
    return ValidationFailed(
        FieldError("OauthAccess", "access_token", "invalid", "the token is not valid for this app")
    )


@client_router.delete("/applications/{client_id}/grant", status_code=204)
def delete_grant(
    request: Request,
    client_id: str,
    session: SessionDep,
    payload: Annotated[dict[str, object], Body()],
) -> Response:
    app = _client(session, request, client_id)
    if not oauth.delete_grant_for_token(session, request, app, _token_of(payload)):
        raise _invalid_token()
    return Response(status_code=204)


@client_router.delete("/applications/{client_id}/token", status_code=204)
def delete_token(
    request: Request,
    client_id: str,
    session: SessionDep,
    payload: Annotated[dict[str, object], Body()],
) -> Response:
    app = _client(session, request, client_id)
    if not oauth.revoke_token(session, request, app, _token_of(payload)):
        raise _invalid_token()
    return Response(status_code=204)
