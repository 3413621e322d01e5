"""REST API for administering sign-in sources."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
