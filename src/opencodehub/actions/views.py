"""Web pages for Actions: runs, jobs and live logs."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
