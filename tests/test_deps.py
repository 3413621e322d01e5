"""The request's database session: bounded so that a burst of requests cannot exhaust the pool."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from opencodehub import app as app_module
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database


def test_more_requests_than_connections_all_succeed(
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forty authenticated requests at once against a pool of three connections and four
    worker threads. Each request holds its connection across the awaits between its thread
    hops; without a bound on sessions, requests holding connections wait for a thread while
    every thread waits for a connection, and the pool times out (500s)."""
    token = make_token(make_user("alice"))
    monkeypatch.setattr(app_module, "WORKER_THREADS", 4)
    monkeypatch.setattr(app_module, "REQUEST_SESSIONS", 2)
    small = Database(db.url, pool_size=3, max_overflow=0, pool_timeout=3)
    app = app_module.create_app(settings, small)
    headers = {"Authorization": f"token {token}"}

    async def burst() -> list[int]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        saved_tokens = limiter.total_tokens
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    answers = await asyncio.gather(
                        *(client.get("/api/v3/user", headers=headers) for _ in range(40))
                    )
        finally:
            limiter.total_tokens = saved_tokens
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(burst()) == [200] * 40
    finally:
        small.dispose()


# Dependencies FastAPI runs on a worker thread because they are plain functions: each must do
# blocking work (a database query, a password check, building a storage client on first use).
# A dependency that only reads the request or the caller is `async def` instead: the hop to a
# thread and back costs more than its work, on every request of every route that uses it.
BLOCKING_DEPENDENCIES = {
    "opencodehub.accounts.oauthapps.views.managed_owner",
    "opencodehub.accounts.security.sudo.require_sudo",
    "opencodehub.accounts.sso.views._admin_in_sudo",
    "opencodehub.issues.views.repo_page",
    "opencodehub.repos.api.redirect_moved_repository",
    "opencodehub.repos.deps.RepoFor.<locals>.repository_for",
    "opencodehub.repos.deps.RepoPageFor.<locals>.repository_page_for",
    "opencodehub.repos.deps.WebRepoFor.<locals>.page_repository_for",
    "opencodehub.storage.views.get_storage",
    "opencodehub.storage.views.get_url_signer",
    "opencodehub.web.csrf.verify_csrf",
}


def _thread_dependencies(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        call = inspect.unwrap(sub.call) if sub.call is not None else None
        if call is not None and not (
            inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
        ):
            yield f"{call.__module__}.{call.__qualname__}"
        yield from _thread_dependencies(sub)


def test_only_dependencies_that_block_run_on_a_worker_thread(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="k" * 32, _env_file=None)
    app_module.create_app(settings, Database(settings.effective_database_url))  # every router
    routers = {
        id(value): value
        for name, module in list(sys.modules.items())
        if name.startswith("opencodehub.")
        for value in list(vars(module).values())
        if isinstance(value, APIRouter)
    }
    found = {
        dependency
        for router in routers.values()
        for route in router.routes
        if isinstance(route, APIRoute)
        for dependency in _thread_dependencies(route.dependant)
    }
    assert len(routers) > 20
    assert "opencodehub.web.csrf.verify_csrf" in found  # the walk sees nested dependencies
    assert found <= BLOCKING_DEPENDENCIES, sorted(found - BLOCKING_DEPENDENCIES)
