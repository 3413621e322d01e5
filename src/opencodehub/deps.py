"""FastAPI dependencies shared by every domain's routes: settings, database session, the caller.

`SessionDep` is one unit of work per request, committed when the route returns (before the
response is sent) and rolled back when it raises.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Unauthorized
from opencodehub.db.engine import Database


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_database(request: Request) -> Database:
    return request.app.state.db


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class BadCredentials(Unauthorized):
    default_message = "Bad credentials"


def parse_authorization(header: str) -> tuple[str, str, str] | None:
    """`(scheme, username, secret)` from an Authorization header; username is "" for tokens."""
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme in ("token", "bearer") and value:
        return scheme, "", value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, secret = decoded.partition(":")
        if not sep:
            return None
        return scheme, username, secret
    return None


def actor_from_authorization(session: Session, header: str) -> Actor:
    """Resolve an Authorization header; a header that is present but wrong is an error, never
    a silent fall-back to anonymous."""
    parsed = parse_authorization(header)
    if parsed is None:
        raise BadCredentials()
    scheme, username, secret = parsed
    if scheme == "basic":
        actor = accounts.authenticate_basic(session, username, secret)
    else:
        actor = accounts.actor_for_secret(session, secret)
    if actor is None:
        raise BadCredentials()
    return actor


def get_actor(request: Request, session: SessionDep) -> Actor:
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization")
    if header:
        actor = actor_from_authorization(session, header)
    else:
        web_session = accounts.get_web_session(
            session, request.cookies.get(accounts.SESSION_COOKIE)
        )
        actor = Actor(user=web_session.user, method="session") if web_session else Actor.anonymous()
        request.state.web_session = web_session
    request.state.actor = actor
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require_user(actor: CurrentActor) -> User:
    if actor.user is None:
        raise Unauthorized()
    return actor.user


CurrentUser = Annotated[User, Depends(require_user)]
