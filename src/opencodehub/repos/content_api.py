"""REST routes for a repository's git data: branches, tags, commits, compare, trees, blobs,
contents, readme, archives."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
