"""REST API for account security: the caller's security log.

`GET /api/v3/user/security-log` is OpenCodeHub's own (GitHub shows the log only on the web): the
authenticated user's events, newest first, paginated with `page`/`per_page` and a Link header.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.accounts.security import audit
from opencodehub.core.errors import Forbidden
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep

router = APIRouter(tags=["security"])


@router.get("/user/security-log")
def security_log(
    request: Request,
    response: Response,
    session: SessionDep,
    actor: CurrentActor,
    user: CurrentUser,
    page: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    per_page: Annotated[int | None, Query(ge=1, le=100)] = None,
    event: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """The caller's security events. A token needs the `user` or `read:user` scope."""
    if actor.scopes is not None and not actor.has_scope("read:user"):
        raise Forbidden("The token needs the read:user scope to read the security log.")
    response.headers["X-Accepted-OAuth-Scopes"] = "read:user, user"
    chosen = Page.of(page, per_page)
    events = audit.list_events(
        session, user_id=user.id, event=event, limit=chosen.limit + 1, offset=chosen.offset
    )
    has_next = len(events) > chosen.limit
    events = events[: chosen.limit]
    ids = {item.actor_id for item in events if item.actor_id} | {user.id}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    names = {row[0]: row[1] for row in rows}
    params = {"event": event} if event else {}
    base = str(request.url).split("?", 1)[0]
    link = link_header(base, params, chosen, None, has_next)
    if link:
        response.headers["Link"] = link
    return [audit.as_json(item, names) for item in events]
