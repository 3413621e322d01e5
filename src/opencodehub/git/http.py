"""Git smart HTTP transport, answered as raw ASGI before FastAPI routing."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from opencodehub.config import Settings
from opencodehub.db.engine import Database


class GitHTTPMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, database: Database) -> None:
        self.app = app
        self.settings = settings
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
