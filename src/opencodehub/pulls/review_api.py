"""REST API for pull request reviews and review comments, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
