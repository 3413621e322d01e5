"""REST API for commit statuses, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
