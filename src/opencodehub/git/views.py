"""Archive downloads: `/{owner}/{repo}/archive/{ref}.zip` and `.tar.gz`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
