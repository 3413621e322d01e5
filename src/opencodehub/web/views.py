"""Site-wide pages (home, dashboard), static files, and the web UI's middleware and handlers."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from opencodehub.accounts import service as accounts
from opencodehub.deps import CurrentActor, SessionDep
from opencodehub.web.auth import LoginRequired, login_redirect
from opencodehub.web.security import SecurityHeadersMiddleware
from opencodehub.web.templating import STATIC_DIR, render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request, actor: CurrentActor, session: SessionDep) -> Response:
    """Signed out: the landing page. Signed in: the dashboard."""
    if actor.user is None:
        return render(request, "home/landing.html", page_title="Welcome")
    organizations = accounts.list_user_orgs(session, actor.user)
    return render(
        request,
        "home/dashboard.html",
        page_title="Dashboard",
        organizations=organizations,
    )


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return login_redirect(exc.next_path)


def mount(app: FastAPI) -> None:
    """Static files, the site-wide pages, the sign-in redirect and the security headers."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_middleware(SecurityHeadersMiddleware)
