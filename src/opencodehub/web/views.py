"""Site-wide pages (home, static files) and the template environment's mount point."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    return None
