"""Sign-in with external providers: redirects, callbacks, linking, settings pages."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
