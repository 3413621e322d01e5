"""Two-factor enrolment and challenge, sudo mode, audit log pages."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
