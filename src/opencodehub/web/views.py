"""Site-wide pages (home, dashboard, explore), static files, the UI's middleware and handlers."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from opencodehub.accounts import service as accounts
from opencodehub.core.pagination import Page
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep
from opencodehub.repos import listing
from opencodehub.repos import service as repos
from opencodehub.web.auth import LoginRequired, login_redirect
from opencodehub.web.security import SecurityHeadersMiddleware
from opencodehub.web.templating import STATIC_DIR, render

router = APIRouter(include_in_schema=False)

DASHBOARD_REPOSITORIES = 30
DASHBOARD_PUSHES = 20
EXPLORE_PER_PAGE = 20
# Deeper pages than this are not worth an OFFSET scan; the search box narrows instead.
MAX_PAGE = 500


def parse_page(raw: str) -> int:
    """A `?page=` value: anything but a positive integer reads as the first page."""
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        return 1
    return min(max(int(raw), 1), MAX_PAGE)


@router.get("/")
def home(request: Request, actor: CurrentActor, session: SessionDep) -> Response:
    """Signed out: the landing page. Signed in: the dashboard (repositories the user owns,
    collaborates on or reaches through an organization; organizations; recent pushes)."""
    if actor.user is None:
        return render(request, "home/landing.html", page_title="Welcome")
    organizations = accounts.list_user_orgs(session, actor.user)
    repositories, repository_total = repos.list_for_actor(
        session, actor, Page(1, DASHBOARD_REPOSITORIES), sort="updated"
    )
    return render(
        request,
        "home/dashboard.html",
        page_title="Dashboard",
        organizations=organizations,
        repositories=repositories,
        repository_total=repository_total,
        pushes=listing.recent_pushes(session, actor, DASHBOARD_PUSHES),
    )


@router.get("/explore")
def explore(
    request: Request,
    actor: CurrentActor,
    session: SessionDep,
    q: str = "",
    sort: str = "updated",
    page: str = "1",
) -> Response:
    """Public repositories (and internal ones for signed-in users), searchable by name."""
    query = listing.clean_query(q)
    # Stars do not exist yet: `sort=stars` (and anything unknown) falls back to updated.
    chosen: listing.ExploreSort = "name" if sort == "name" else "updated"
    number = parse_page(page)
    repositories, total = listing.explore(
        session, actor, Page(number, EXPLORE_PER_PAGE), query=query, sort=chosen
    )
    last_page = max(1, -(-total // EXPLORE_PER_PAGE))

    def page_url(target: int) -> str:
        params = {"q": query, "sort": chosen, "page": str(target)}
        return "/explore?" + urlencode({key: value for key, value in params.items() if value})

    return render(
        request,
        "explore/index.html",
        page_title="Explore",
        repositories=repositories,
        total=total,
        query=query,
        sort=chosen,
        stars_requested=sort == "stars",
        page_number=number,
        previous_url=page_url(number - 1) if number > 1 else None,
        next_url=page_url(number + 1) if number < min(last_page, MAX_PAGE) else None,
        last_page=last_page,
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
