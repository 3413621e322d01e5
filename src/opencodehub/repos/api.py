"""REST routes for repositories and their git data, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
