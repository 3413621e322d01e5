"""REST routes for repositories and their git data, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

from opencodehub.repos import content_api

router = APIRouter()
router.include_router(content_api.router)
