"""Token exchange under the API and the JWKS document."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()

# Served at the site root: /.well-known/jwks.json
wellknown_router = APIRouter()
