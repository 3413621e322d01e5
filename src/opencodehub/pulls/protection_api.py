"""REST API for branch protection, in GitHub's shape."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
