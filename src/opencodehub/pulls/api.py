"""REST API for pull requests and merges, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
