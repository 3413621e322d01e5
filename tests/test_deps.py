"""The request's database session: bounded so that a burst of requests cannot exhaust the pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio.to_thread
import httpx
import pytest

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
