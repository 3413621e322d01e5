"""REST API for forks, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
