"""One-shot messages shown on the next page ("Your profile was updated.").

They travel in a short-lived signed cookie, so they work before and after signing in and need no
storage; `web.templating.render` shows them and clears the cookie.
"""

from __future__ import annotations

import base64
import json
from typing import Literal

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from opencodehub.core.crypto import sign, verify

FLASH_COOKIE = "och_flash"
_PURPOSE = "flash"
_MAX_MESSAGE = 500
_MAX_COOKIE = 3000

Category = Literal["success", "error", "info", "warning"]


def _encode(messages: list[tuple[str, str]], secret: bytes) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(messages).encode()).decode().rstrip("=")
    return f"{payload}.{sign(secret, _PURPOSE, payload)}"


def read_flashes(request: Request) -> list[tuple[str, str]]:
    """The messages waiting for this request (an unsigned or tampered cookie is ignored)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or len(raw) > _MAX_COOKIE or "." not in raw:
        return []
    payload, _, signature = raw.rpartition(".")
    if not verify(request.app.state.settings.secret, _PURPOSE, payload, signature):
        return []
    try:
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return []
    messages: list[tuple[str, str]] = []
    if isinstance(decoded, list):
        for item in decoded:
            if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                messages.append((item[0], item[1]))
    return messages


def add_flash(
    request: Request, response: Response, message: str, category: Category = "success"
) -> None:
    messages = [*read_flashes(request), (category, message[:_MAX_MESSAGE])][-5:]
    response.set_cookie(
        FLASH_COOKIE,
        _encode(messages, request.app.state.settings.secret),
        max_age=120,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
        path="/",
    )


def clear_flashes(request: Request, response: Response) -> None:
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")


def redirect(
    request: Request, url: str, message: str | None = None, category: Category = "success"
) -> RedirectResponse:
    """A 303 to `url` (a path the caller chose, never raw user input), with an optional flash."""
    response = RedirectResponse(url, status_code=303)
    if message:
        add_flash(request, response, message, category)
    return response
