"""ASGI factory: builds the FastAPI app and mounts every domain's routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencodehub import __version__, ops
from opencodehub.accounts import api as accounts_api
from opencodehub.accounts import views as accounts_views
from opencodehub.accounts.jwt import api as jwt_api
from opencodehub.accounts.jwt import service as jwt_service
from opencodehub.accounts.oauthapps import api as oauthapps_api
from opencodehub.accounts.oauthapps import views as oauthapps_views
from opencodehub.accounts.security import api as security_api
from opencodehub.accounts.security import views as security_views
from opencodehub.accounts.security.middleware import AdminTwoFactorMiddleware
from opencodehub.accounts.sso import api as sso_api
from opencodehub.accounts.sso import views as sso_views
from opencodehub.actions import api as actions_api
from opencodehub.actions import runner_api as actions_runner_api
from opencodehub.actions import views as actions_views
from opencodehub.avatars import views as avatars_views
from opencodehub.config import Settings, get_settings
from opencodehub.core.background import WorkerContext, run_jobs
from opencodehub.core.errors import DOCS_URL, OCHError
from opencodehub.core.events import build_event_bus
from opencodehub.core.logging import configure_logging
from opencodehub.core.ratelimit import build_rate_limiter
from opencodehub.db.engine import REQUEST_SESSIONS, WORKER_THREADS, Database
from opencodehub.git import internal as git_internal
from opencodehub.git import views as git_views
from opencodehub.git.http import GitHTTPMiddleware
from opencodehub.issues import api as issues_api
from opencodehub.issues import views as issues_views
from opencodehub.lfs import api as lfs_api
from opencodehub.notifications import api as notifications_api
from opencodehub.notifications import views as notifications_views
from opencodehub.pulls import api as pulls_api
from opencodehub.pulls import protection_api, review_api, review_views
from opencodehub.pulls import views as pulls_views
from opencodehub.repos import api as repos_api
from opencodehub.repos import content_api as repos_content_api
from opencodehub.repos import forks_api, statuses_api
from opencodehub.repos import manage_views as repos_manage_views
from opencodehub.repos import views as repos_views
from opencodehub.storage import views as storage_views
from opencodehub.web import errors as web_errors
from opencodehub.web import views as web_views

API_PREFIX = "/api/v3"
# In a serving process, the periodic background jobs begin this long after start-up, so that
# their first rounds do not compete with the first requests (readiness probes included).
PERIODIC_JOBS_START_DELAY_SECONDS = 2.0


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def _api_headers(request: Request, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers every API answer carries, errors included (X-OAuth-Scopes and the like)."""
    return {**getattr(request.state, "api_headers", {}), **(extra or {})}


async def _och_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OCHError)
    if _is_api(request):
        return JSONResponse(
            exc.body(), status_code=exc.status_code, headers=_api_headers(request, exc.headers)
        )
    return web_errors.render_error(request, exc.status_code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_api(request):
        return web_errors.render_error(request, 422, "The form could not be read.")
    errors: list[dict[str, Any]] = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        errors.append(
            {
                "resource": "Request",
                "field": ".".join(location) or "body",
                "code": "missing_field" if error.get("type") == "missing" else "invalid",
                "message": error.get("msg", ""),
            }
        )
    if any(error.get("type") == "json_invalid" for error in exc.errors()):
        return JSONResponse(
            {"message": "Problems parsing JSON", "documentation_url": DOCS_URL},
            400,
            headers=_api_headers(request),
        )
    return JSONResponse(
        {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS_URL},
        422,
        headers=_api_headers(request),
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _is_api(request):
        message = exc.detail if isinstance(exc.detail, str) else "Error"
        if exc.status_code == 404:
            message = "Not Found"
        return JSONResponse(
            {"message": message, "documentation_url": DOCS_URL},
            status_code=exc.status_code,
            headers=_api_headers(request, exc.headers),
        )
    return web_errors.render_error(request, exc.status_code, str(exc.detail))


# In the order they are matched: statuses, protection and reviews come before repos and pulls,
# whose `commits/{ref:path}`, `branches/{branch:path}` and `pulls/{number}` would otherwise match
# these routers' longer paths first.
API_ROUTERS: tuple[tuple[APIRouter, list[Any]], ...] = (
    (accounts_api.router, []),
    (sso_api.router, []),
    (security_api.router, []),
    (jwt_api.router, []),
    (oauthapps_api.router, []),
    (statuses_api.router, []),
    (protection_api.router, []),
    (review_api.router, []),
    (repos_api.router, []),
    (repos_api.repo_router, []),
    (repos_content_api.router, repos_api.REPOSITORY_DEPENDENCIES),
    (forks_api.router, []),
    (issues_api.router, []),
    (pulls_api.router, []),
    (notifications_api.router, []),
    (actions_api.router, []),
)


def include_api_routers(app: FastAPI) -> None:
    """Each domain's REST router under `/api/v3`, rate-limited.

    Included side by side with the prefix, never nested without one: FastAPI analyses an
    included router's endpoints again for each level of nesting without a prefix (to check
    their paths) and keeps every analysis. Flat, start-up takes a second less and the app holds
    no unused copies of its API routes."""
    rate_limited = [Depends(accounts_api.enforce_rate_limit)]
    for router, dependencies in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX, dependencies=[*rate_limited, *dependencies])


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    database = database or Database(settings.effective_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The database pool is sized for exactly this many worker threads (see db/engine.py).
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        # Made here, in the serving loop: see REQUEST_SESSIONS in db/engine.py.
        app.state.session_slots = asyncio.Semaphore(REQUEST_SESSIONS)
        background: asyncio.Task[None] | None = None
        if settings.run_background_jobs:
            context = WorkerContext(
                settings,
                database,
                app.state.events,
                periodic_start_delay=PERIODIC_JOBS_START_DELAY_SECONDS,
            )
            background = asyncio.create_task(run_jobs(context), name="background-jobs")
        try:
            yield
        finally:
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            app.state.events.close()
            database.dispose()

    app = FastAPI(
        title="OpenCodeHub",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.rate_limiter = build_rate_limiter(settings.redis_url)
    app.state.events = build_event_bus(settings.redis_url)
    # Token resolvers see only (session, secret): JWT checks find the issuer and keys this way.
    jwt_service.bind_settings(database.engine, settings)

    app.add_exception_handler(OCHError, _och_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    app.include_router(ops.router)
    # Routes are matched in order, one by one: the runners' requests (several per CI job) come
    # first, ahead of the few hundred REST routes. Nothing else lives under their prefix.
    app.include_router(actions_runner_api.router)
    include_api_routers(app)
    web_views.mount(app)
    app.include_router(repos_manage_views.router)
    app.include_router(accounts_views.router)
    app.include_router(sso_views.router)
    app.include_router(security_views.router)
    app.include_router(jwt_api.wellknown_router)
    app.include_router(oauthapps_views.router)
    app.include_router(notifications_views.router)
    app.include_router(git_internal.router)
    app.include_router(git_views.router)
    app.include_router(lfs_api.router)
    app.include_router(avatars_views.router)
    app.include_router(storage_views.router)
    app.include_router(issues_views.router)
    app.include_router(pulls_views.router)
    app.include_router(review_views.router)
    app.include_router(actions_views.router)
    app.include_router(repos_views.router)  # last: its /{owner}/{repo} pages match broadly

    # Outermost first: request ids wrap everything; git's smart HTTP is answered before routing.
    app.add_middleware(AdminTwoFactorMiddleware, settings=settings, database=database)
    app.add_middleware(GitHTTPMiddleware, settings=settings, database=database)
    app.add_middleware(ops.RequestContextMiddleware)
    return app
