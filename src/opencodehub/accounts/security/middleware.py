"""`require_2fa_for_admins` for browser sessions that already exist.

Sign-in sends an admin without a second factor to enrol before any session starts
(`accounts.views.sign_in_response`). This middleware covers sessions started before the setting
was turned on: such an admin's browser is sent to the security settings page for everything
else, and API calls made with the session are refused with a message that says why. Tokens and
SSH keys keep working. With the setting off it costs one attribute check per request.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from opencodehub.accounts import service as accounts
from opencodehub.accounts.security import service as security
from opencodehub.config import Settings
from opencodehub.core.errors import DOCS_URL
from opencodehub.db.engine import Database

ENROL_PAGE = "/settings/security"
# What an admin who must enrol can still reach: enrolment itself, sudo, signing in and out.
_ALLOWED_PREFIXES = (
    ENROL_PAGE,
    "/sudo",
    "/login",
    "/logout",
    "/static/",
    "/favicon",
)
MESSAGE = (
    "This site requires administrators to use two-factor authentication. Set up an "
    f"authenticator app or a security key at {ENROL_PAGE} first."
)


class AdminTwoFactorMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, database: Database) -> None:
        self.app = app
        self.settings = settings
        self.database = database

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.require_2fa_for_admins:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        cookie_header = headers.get("cookie", "")
        if (
            path.startswith(_ALLOWED_PREFIXES)
            or "authorization" in headers
            or accounts.SESSION_COOKIE not in cookie_header
        ):
            await self.app(scope, receive, send)
            return
        cookies = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except CookieError:  # a malformed header is the app's to answer
            await self.app(scope, receive, send)
            return
        morsel = cookies.get(accounts.SESSION_COOKIE)
        if morsel is None or not await run_in_threadpool(self._must_enrol, morsel.value):
            await self.app(scope, receive, send)
            return
        if path.startswith("/api/"):
            response = JSONResponse({"message": MESSAGE, "documentation_url": DOCS_URL}, 403)
        else:
            response = RedirectResponse(ENROL_PAGE, status_code=303)
        await response(scope, receive, send)

    def _must_enrol(self, cookie_value: str) -> bool:
        with self.database.session() as session:
            web_session = accounts.get_web_session(session, cookie_value)
            if web_session is None:
                return False
            return security.admin_needs_enrolment(session, web_session.user, True)
