"""The Jinja2 environment and `render()`, through which every HTML page goes.

`render(request, "some/page.html", key=value)` adds what the layout needs: the signed-in user, the
CSRF token, pending flash messages, the theme and the site settings. Templates of every domain
live under `web/templates/` (`repos/…`, `issues/…`) and extend `base.html`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from opencodehub import __version__
from opencodehub.core.errors import ValidationFailed
from opencodehub.core.time import isoformat
from opencodehub.web import csrf, flash
from opencodehub.web.auth import current_user

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
THEME_COOKIE = "och_theme"
THEMES = ("light", "dark")


def _datetime(value: Any, fmt: str = "%b %d, %Y %H:%M UTC") -> str:
    return value.strftime(fmt) if value is not None else ""


def _build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["datetime"] = _datetime
    env.filters["isoformat"] = isoformat
    env.globals["version"] = __version__
    return env


templates = _build_environment()


def theme_of(request: Request) -> str:
    """ "light" or "dark" when the visitor chose one, else "auto" (follow the system)."""
    chosen = request.cookies.get(THEME_COOKIE, "")
    return chosen if chosen in THEMES else "auto"


def field_errors(exc: ValidationFailed) -> dict[str, str]:
    """A service's `ValidationFailed` as {field: message} for the form's inline messages."""
    errors: dict[str, str] = {}
    for error in exc.errors:
        reason = error.message or error.code.replace("_", " ")
        errors.setdefault(error.field, reason)
    return errors


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    flashes = flash.read_flashes(request)
    settings = request.app.state.settings
    page = templates.get_template(template).render(
        request=request,
        current_user=current_user(request),
        csrf_token=csrf.csrf_token(request),
        csrf_field=csrf.CSRF_FIELD,
        flashes=flashes,
        theme=theme_of(request),
        allow_signup=settings.allow_signup,
        **context,
    )
    response = HTMLResponse(page, status_code=status_code, headers=dict(headers or {}))
    # Pages show private data; no shared cache and no back-button copy after sign-out.
    response.headers.setdefault("Cache-Control", "no-store")
    csrf.set_csrf_cookie(request, response)
    if flashes:
        flash.clear_flashes(request, response)
    return response
