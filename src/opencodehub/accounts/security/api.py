"""REST API for account security (audit log)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
