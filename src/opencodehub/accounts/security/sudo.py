"""Sudo mode: a fresh proof of identity before a sensitive change.

A browser session enters sudo mode for `SUDO_DURATION` after the user re-authenticates at
`/sudo`: password; a code of their authenticator app or a security key; or signing in again
with a linked provider that proves a fresh sign-in there (OpenID Connect, GitLab with
`openid`), or, for an account without a password and without a second factor, with any linked
provider. Routes that change credentials depend on `RequireSudo`: outside sudo mode the browser
is sent to `/sudo?next=…` and comes back to the page afterwards.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Body, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.accounts.security import audit
from opencodehub.accounts.security import service as security
from opencodehub.accounts.security import webauthn as keys
from opencodehub.accounts.throttle import LoginThrottle, LoginThrottled, account_key
from opencodehub.core.routing import APIRouter
from opencodehub.deps import SessionDep, SettingsDep
from opencodehub.web.auth import LoginRequired, WebUser, safe_next, web_session_of
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.templating import render

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]


class SudoRequired(LoginRequired):
    """Answered like LoginRequired: /login forwards a signed-in browser on to `next`, here
    `/sudo?next=…`, so no extra exception handler is needed."""


def sudo_url(next_path: str) -> str:
    return f"/sudo?next={quote(safe_next(next_path), safe='/')}"


def _return_path(request: Request) -> str:
    """Where to come back to: the page itself for a GET, the page the form was on otherwise
    (a POST cannot be replayed after a redirect; the user submits it again in sudo mode)."""
    if request.method == "GET":
        path = request.url.path
        return f"{path}?{request.url.query}" if request.url.query else path
    referer = request.headers.get("referer", "")
    parts = urlsplit(referer)
    base = urlsplit(request.app.state.settings.effective_base_url)
    if referer and (parts.netloc in (request.url.netloc, base.netloc)):
        path = parts.path or "/"
        return safe_next(f"{path}?{parts.query}" if parts.query else path)
    return "/settings/security"


def require_sudo(request: Request, user: WebUser, session: SessionDep) -> User:
    if security.sudo_active(session, web_session_of(request)):
        return user
    raise SudoRequired(sudo_url(_return_path(request)))


RequireSudo = Annotated[User, Depends(require_sudo)]


def _linked_sources(session: SessionDep, user: User) -> list[Any]:
    """The linked providers whose re-authentication enters sudo mode (`/sudo/sso/{slug}`):
    those that must show their login form again and prove it (OpenID Connect, GitLab with
    `openid`) and, for an account with no password and no second factor, any other
    (`sso.may_reauthenticate_with`)."""
    from opencodehub.accounts.sso import service as sso

    return sso.sudo_sources(session, user)


def _page(request: Request, user: User, session: SessionDep, **context: Any) -> Response:
    status = context.pop("status", 200)
    return render(
        request,
        "security/sudo.html",
        page_title="Confirm access",
        next_path=context.pop("next_path", "/"),
        linked_sources=_linked_sources(session, user),
        has_password=bool(user.password_hash),
        has_totp=security.has_totp(session, user),
        has_keys=security.count_security_keys(session, user) > 0,
        error=context.pop("error", ""),
        status_code=status,
        headers=context.pop("headers", None),
        **context,
    )


@router.get("/sudo")
def sudo_form(request: Request, user: WebUser, session: SessionDep, next: str = "") -> Response:
    target = safe_next(next)
    if security.sudo_active(session, web_session_of(request)):
        return RedirectResponse(target, status_code=303)
    return _page(request, user, session, next_path=target)


def _granted(request: Request, session: SessionDep, user: User, method: str) -> None:
    web_session = web_session_of(request)
    assert web_session is not None
    security.grant_sudo(session, web_session)
    audit.record(session, user, "sudo.granted", request, method=method)


@router.post("/sudo")
def sudo_confirm(
    request: Request,
    _: CsrfProtected,
    user: WebUser,
    session: SessionDep,
    settings: SettingsDep,
    password: FormStr = "",
    code: FormStr = "",
    next: FormStr = "",
) -> Response:
    target = safe_next(next)
    if web_session_of(request) is None:
        # Sudo mode belongs to a browser session; other credentials cannot enter it.
        return _page(request, user, session, next_path=target, error="Sign in first.", status=403)
    limiter = request.app.state.rate_limiter
    if password:
        throttle = LoginThrottle.from_settings(limiter, settings)
        key = account_key(session, user.username)
        ip_address = audit.request_ip(request)
        try:
            throttle.check(ip_address, key)
        except LoginThrottled as exc:
            return _page(
                request,
                user,
                session,
                next_path=target,
                error=exc.message,
                status=429,
                headers=exc.headers,
            )
        if accounts.check_password(user, password):
            throttle.record_success(key)
            _granted(request, session, user, "password")
            return RedirectResponse(target, status_code=303)
        throttle.record_failure(ip_address, key)
        return _page(
            request, user, session, next_path=target, error="Incorrect password.", status=422
        )
    if code:
        try:
            security.check_challenge(limiter, user.id)
        except security.ChallengeThrottled as exc:
            return _page(
                request,
                user,
                session,
                next_path=target,
                error=exc.message,
                status=429,
                headers=exc.headers,
            )
        if security.verify_totp(session, settings.secret, user, code):
            security.reset_challenge(limiter, user.id)
            _granted(request, session, user, "totp")
            return RedirectResponse(target, status_code=303)
        security.record_challenge_failure(limiter, user.id)
        return _page(request, user, session, next_path=target, error="Incorrect code.", status=422)
    return _page(request, user, session, next_path=target, error="Enter your password.", status=422)


@router.post("/sudo/webauthn/options")
def sudo_webauthn_options(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, settings: SettingsDep
) -> Response:
    return JSONResponse(keys.authentication_options(session, settings, user, purpose="sudo"))


@router.post("/sudo/webauthn")
def sudo_webauthn(
    request: Request,
    _: CsrfProtected,
    user: WebUser,
    session: SessionDep,
    settings: SettingsDep,
    credential: Annotated[dict[str, Any], Body()],
) -> Response:
    limiter = request.app.state.rate_limiter
    try:
        security.check_challenge(limiter, user.id)
    except security.ChallengeThrottled as exc:
        return JSONResponse({"message": exc.message}, 429, headers=exc.headers)
    if web_session_of(request) is None:
        return JSONResponse({"message": "Sign in first."}, 403)
    if keys.authenticate(session, settings, user, credential, purpose="sudo") is None:
        security.record_challenge_failure(limiter, user.id)
        return JSONResponse({"message": "The security key could not be verified."}, 422)
    _granted(request, session, user, "security_key")
    return JSONResponse({"ok": True})
