"""REST API for Actions runs, jobs, logs and runner registration, in GitHub's shapes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
