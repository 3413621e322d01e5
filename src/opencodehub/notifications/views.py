"""Web pages for the notification inbox."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
