"""Error pages for the web UI, rendered in the site layout."""

from __future__ import annotations

import html
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from opencodehub.core.logging import get_logger
from opencodehub.web.auth import login_redirect

log = get_logger("opencodehub.web")

_FRIENDLY = {
    401: "You need to sign in to see this page.",
    403: "You do not have permission to do that.",
    404: "The page you are looking for does not exist, or you do not have access to it.",
    405: "That action is not available here.",
    429: "Too many requests. Wait a moment and try again.",
    500: "Something went wrong on our side.",
}


def _title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def render_error(request: Request, status_code: int, message: str) -> Response:
    """The error page for `status_code`; an anonymous GET that needs a session goes to sign-in."""
    if status_code == 401 and request.method == "GET":
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return login_redirect(path)
    from opencodehub.web.templating import render

    # Starlette's default 404/405 details just repeat the status phrase; say something useful.
    if not message or message == _title(status_code):
        message = _FRIENDLY.get(status_code, _title(status_code))
    try:
        return render(
            request,
            "error.html",
            status_code=status_code,
            error_status=status_code,
            error_title=_title(status_code),
            error_message=message,
        )
    except Exception:
        # The layout itself failed (database down, template bug): still answer something useful.
        log.exception("error page rendering failed", status=status_code)
        heading = f"<title>{status_code}</title><h1>{status_code}</h1>"
        body = f"<!doctype html>{heading}<p>{html.escape(message)}</p>"
        return HTMLResponse(body, status_code=status_code)
