"""The internal channel the server-side git hooks call (authenticated, never public)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
