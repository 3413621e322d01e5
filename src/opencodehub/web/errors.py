"""Error pages for the web UI."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response


def render_error(request: Request, status_code: int, message: str) -> Response:
    return HTMLResponse(f"<h1>{status_code}</h1>", status_code=status_code)
