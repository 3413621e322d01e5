"""Who is signed in, for HTML pages: the browser session behind a request.

`deps.get_actor` resolves the session cookie for routes that depend on `CurrentActor`; pages that
render without it (error pages, static-ish pages) resolve it here, lazily and once per request.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import inspect as sa_inspect

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User, WebSession
from opencodehub.deps import CurrentActor

_UNRESOLVED = object()
MAX_NEXT_LENGTH = 2048


class LoginRequired(Exception):
    """A page needs a signed-in user: answered with a redirect to /login?next=…"""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__(next_path)


def _usable(instance: object) -> bool:
    """False for a record whose request session was rolled back and closed (an error page
    rendered after a failed route): its attributes can no longer be loaded."""
    state = sa_inspect(instance)
    return not (state.detached and state.expired_attributes)


def web_session_of(request: Request) -> WebSession | None:
    """The request's browser session (None when signed out or authenticated otherwise)."""
    cached = getattr(request.state, "web_session", _UNRESOLVED)
    if cached is None or (cached is not _UNRESOLVED and _usable(cached)):
        return cached  # type: ignore[return-value]
    web_session: WebSession | None = None
    cookie = request.cookies.get(accounts.SESSION_COOKIE)
    if cookie:
        with request.app.state.db.session() as session:
            web_session = accounts.get_web_session(session, cookie)
    request.state.web_session = web_session
    return web_session


def current_user(request: Request) -> User | None:
    actor = getattr(request.state, "actor", None)
    if actor is not None and (actor.user is None or _usable(actor.user)):
        return actor.user
    web_session = web_session_of(request)
    return web_session.user if web_session is not None else None


async def require_web_user(request: Request, actor: CurrentActor) -> User:
    """The signed-in user of an HTML page; anonymous visitors are sent to the sign-in page."""
    if actor.user is None:
        path = request.url.path
        if request.url.query:
            path = f"{path}?{request.url.query}"
        raise LoginRequired(path if request.method == "GET" else "/")
    return actor.user


WebUser = Annotated[User, Depends(require_web_user)]


def safe_next(value: str | None, default: str = "/") -> str:
    """A `?next=` target, accepted only when it is a same-site relative path.

    Rejected: absolute URLs and schemes (`https://evil`, `javascript:`), protocol-relative
    `//evil`, backslash tricks (`/\\evil`, which browsers read as `//evil`), and control
    characters (browsers drop tabs and newlines, so `/\\t/evil` would become `//evil`).
    """
    if not value or len(value) > MAX_NEXT_LENGTH:
        return default
    if not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def login_redirect(next_path: str) -> RedirectResponse:
    target = "/login"
    next_path = safe_next(next_path, default="")
    if next_path and next_path != "/":
        target = f"/login?next={quote(next_path, safe='/')}"
    return RedirectResponse(target, status_code=303)
