"""FastAPI dependencies shared by every domain's routes: settings, database session, the caller.

`SessionDep` is one unit of work per request, committed when the route returns (before the
response is sent) and rolled back when it raises.

Dependencies that do no I/O are `async def`: FastAPI runs a sync dependency on a worker thread,
and each hop to a thread and back costs more than the work of a small one. Only what touches the
database goes to a thread: resolving the caller, the route itself, and the commit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Unauthorized
from opencodehub.db import transaction
from opencodehub.db.engine import Database


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


def _commit_and_close(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _rollback_and_close(session: Session) -> None:
    try:
        session.rollback()
    finally:
        session.close()


def _only_read_in_process(session: Session) -> bool:
    """True when the session's database is SQLite and it only read: nothing pending and no
    write transaction open on its connection. Ending it then does no I/O that could wait (a
    SQLite read takes no lock in WAL mode, and a transaction is opened only for a write or a
    savepoint), so it ends on the event loop: a thread hop costs far more than closing it."""
    if session.new or session.dirty or session.deleted or transaction.has_pending(session):
        return False
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return False
    return not connection.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]


async def get_session(request: Request) -> AsyncIterator[Session]:
    # A bounded number of requests hold a session at once (REQUEST_SESSIONS in db/engine.py).
    # Creating a session does no I/O (it connects on first use), so only the teardown of a
    # session that was used needs a worker thread.
    slots: asyncio.Semaphore | None = getattr(request.app.state, "session_slots", None)
    if slots is not None:
        await slots.acquire()
    try:
        session: Session = request.app.state.db.sessionmaker()
        try:
            yield session
        except BaseException:
            await run_in_threadpool(_rollback_and_close, session)
            raise
        if session.in_transaction() and not _only_read_in_process(session):
            await run_in_threadpool(_commit_and_close, session)
        else:
            session.close()
    finally:
        if slots is not None:
            slots.release()


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


def actor_for_request(request: Request, session: Session) -> Actor:
    """The caller, for code that runs on a worker thread with its own session (a streaming
    response's setup, say); routes depend on `CurrentActor` instead."""
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
        request.state.web_session = web_session
        actor = Actor(user=web_session.user, method="session") if web_session else Actor.anonymous()
    request.state.actor = actor
    return actor


def _resolved_by_one_read(header: str | None) -> bool:
    """A session cookie (no header), a personal access token or a JWT: resolving each reads
    one row and its user, and writes nothing but a last-used time, committed later."""
    if header is None:
        return True
    parsed = parse_authorization(header)
    if parsed is None or parsed[0] == "basic":
        return False
    secret = parsed[2]
    return accounts.looks_like_token(secret) or jwt_service.looks_like_jwt(secret)


async def get_actor(request: Request, session: SessionDep) -> Actor:
    cached = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization")
    if header is not None or accounts.SESSION_COOKIE in request.cookies:
        if request.app.state.db.dialect == "sqlite" and _resolved_by_one_read(header):
            # On SQLite that is one indexed read in this process (WAL: readers never wait),
            # cheaper than the hop to a worker thread. Passwords (argon2), other credentials
            # and a server database's round trip go to a thread.
            return actor_for_request(request, session)
        return await run_in_threadpool(actor_for_request, request, session)
    request.state.web_session = None
    request.state.actor = Actor.anonymous()
    return request.state.actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


async def require_user(actor: CurrentActor) -> User:
    if actor.user is None:
        raise Unauthorized()
    return actor.user


CurrentUser = Annotated[User, Depends(require_user)]
