"""HTML routes: sign-up, sign-in, settings, organizations."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
