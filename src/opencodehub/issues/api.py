"""REST API for issues, comments, labels and milestones, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
