"""REST API for notifications, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
