"""REST routes for users, keys, organizations and teams, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from opencodehub.core.errors import Forbidden
from opencodehub.deps import CurrentActor, SettingsDep

router = APIRouter()


def enforce_rate_limit(request: Request, actor: CurrentActor, settings: SettingsDep) -> None:
    """GitHub's core rate limit: per user when authenticated, per IP otherwise."""
    limiter = request.app.state.rate_limiter
    if actor.user is not None:
        key, limit = f"user:{actor.user.id}", settings.rate_limit_authenticated
    else:
        client = request.client.host if request.client else "unknown"
        key, limit = f"ip:{client}", settings.rate_limit_anonymous
    window = limiter.hit(key, limit, 3600)
    request.state.rate_limit = window
    if not window.allowed:
        raise Forbidden("API rate limit exceeded")
