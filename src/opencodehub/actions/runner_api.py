"""The runner protocol's server side (see docs/runner-protocol.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
