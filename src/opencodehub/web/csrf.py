"""CSRF protection for every state-changing browser request.

Two kinds of token, both HMACs keyed by the instance secret (`core.crypto.sign`):

- Signed in: a synchronizer token bound to the browser session, HMAC(secret, session hash). It
  changes when the session rotates (sign-in) and dies with it (sign-out).
- Signed out (sign-in, sign-up): a signed double-submit cookie. `och_csrf` holds a random nonce;
  the form carries HMAC(secret, nonce). A cross-site page can neither read the cookie nor compute
  the HMAC without the secret.

Views use the `CsrfProtected` dependency on every POST; templates put `csrf_token` (injected by
`web.templating.render`) in a hidden `csrf_token` field, and htmx requests send it as the
`X-CSRF-Token` header (base.html configures that).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from opencodehub.core.crypto import constant_time_equals, random_token, sign
from opencodehub.core.errors import Forbidden
from opencodehub.web.auth import web_session_of

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
ANONYMOUS_COOKIE = "och_csrf"
_SESSION_PURPOSE = "csrf:session"
_ANONYMOUS_PURPOSE = "csrf:anonymous"
_NONCE_RE = re.compile(r"\A[A-Za-z0-9_-]{32,64}\Z")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CsrfFailed(Forbidden):
    default_message = (
        "The form's security token is missing or has expired. "
        "Go back, reload the page and try again."
    )


def _secret(request: Request) -> bytes:
    return request.app.state.settings.secret


def _anonymous_nonce(request: Request) -> str | None:
    nonce = request.cookies.get(ANONYMOUS_COOKIE)
    return nonce if nonce and _NONCE_RE.match(nonce) else None


def csrf_token(request: Request) -> str:
    """The token a form rendered for this request must carry."""
    web_session = web_session_of(request)
    if web_session is not None:
        return sign(_secret(request), _SESSION_PURPOSE, web_session.session_hash)
    nonce = _anonymous_nonce(request) or getattr(request.state, "csrf_new_nonce", None)
    if nonce is None:
        nonce = random_token(32)
        request.state.csrf_new_nonce = nonce
    return sign(_secret(request), _ANONYMOUS_PURPOSE, nonce)


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Send the double-submit cookie when `csrf_token()` had to mint a nonce for this page."""
    nonce = getattr(request.state, "csrf_new_nonce", None)
    if nonce is None:
        return
    response.set_cookie(
        ANONYMOUS_COOKIE,
        nonce,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.secure_cookies,
        path="/",
    )


def expected_token(request: Request) -> str | None:
    """What a state-changing request must carry, or None when nothing valid could match."""
    web_session = web_session_of(request)
    if web_session is not None:
        return sign(_secret(request), _SESSION_PURPOSE, web_session.session_hash)
    nonce = _anonymous_nonce(request)
    if nonce is None:
        return None
    return sign(_secret(request), _ANONYMOUS_PURPOSE, nonce)


async def _submitted_token(request: Request) -> str:
    if request.method in _SAFE_METHODS:
        return ""
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    form = await request.form()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else ""


def verify_csrf(request: Request, submitted: str = Depends(_submitted_token)) -> None:
    """Raise `CsrfFailed` (403) unless a state-changing request carries the right token.

    FastAPI resolves this before the route body runs, so a rejected request writes nothing.
    (A plain `def`: resolving the session may query the database, off the event loop.)
    """
    if request.method in _SAFE_METHODS:
        return
    expected = expected_token(request)
    if not submitted or expected is None or not constant_time_equals(submitted, expected):
        raise CsrfFailed()


CsrfProtected = Annotated[None, Depends(verify_csrf)]
"""Use as a parameter (`_: CsrfProtected`) or `dependencies=[CSRF]` on every HTML POST route."""

CSRF = Depends(verify_csrf)
