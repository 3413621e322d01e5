"""Two-factor enrolment and challenge, security keys, sign out everywhere, audit log pages."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Body, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.accounts.security import audit, totp
from opencodehub.accounts.security import service as security
from opencodehub.accounts.security import webauthn as keys
from opencodehub.accounts.security.sudo import RequireSudo
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.templating import field_errors, render
from opencodehub.web.views import parse_page

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
LOG_PAGE_SIZE = 50


def _host(settings: Settings) -> str:
    return urlsplit(settings.effective_base_url).hostname or "localhost"


# The second-factor challenge ----------------------------------------------------------------------


def _pending(request: Request, settings: Settings, purpose: str) -> security.PendingSignIn | None:
    pending = security.decode_pending(settings.secret, request.cookies.get(security.PENDING_COOKIE))
    return pending if pending is not None and pending.purpose == purpose else None


def _pending_user(session: Session, pending: security.PendingSignIn) -> User | None:
    user = session.get(User, pending.user_id)
    return user if user is not None and user.is_active else None


def _expired() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.PENDING_COOKIE, path="/")
    return response


def _challenge_page(
    request: Request, session: Session, user: User, *, recovery: bool = False, **context: Any
) -> Response:
    return render(
        request,
        "security/two_factor.html",
        page_title="Two-factor authentication",
        recovery=recovery,
        has_totp=security.has_totp(session, user),
        has_keys=security.count_security_keys(session, user) > 0,
        error=context.pop("error", ""),
        status_code=context.pop("status", 200),
        headers=context.pop("headers", None),
    )


@router.get("/login/two-factor")
def challenge_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    pending = _pending(request, settings, "challenge")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return _expired()
    return _challenge_page(request, session, user)


@router.get("/login/two-factor/recovery")
def recovery_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    pending = _pending(request, settings, "challenge")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return _expired()
    return _challenge_page(request, session, user, recovery=True)


def _finish(
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    pending: security.PendingSignIn,
    factor: str,
) -> Response:
    """Start the session the pending sign-in was waiting for. When it was the linking of an
    external identity, link it now, and start no session if that fails."""
    from opencodehub.accounts.sso import service as sso
    from opencodehub.accounts.views import start_signed_in_session

    security.reset_challenge(request.app.state.rate_limiter, user.id)
    linked = ""
    if pending.link:
        try:
            source, _ = sso.link_pending_after_second_factor(session, request, pending.link, user)
        except sso.SSOFailed as exc:
            response = render(
                request,
                "sso/error.html",
                page_title="Sign-in failed",
                message=exc.message,
                status_code=exc.status_code,
            )
            response.delete_cookie(security.PENDING_COOKIE, path="/")
            response.link_failure = exc  # type: ignore[attr-defined]  # for the JSON variant
            return response
        linked = source.name
    response = start_signed_in_session(
        request,
        session,
        settings,
        user,
        pending.next_path,
        method=pending.method,
        second_factor=factor,
    )
    if linked:
        from opencodehub.accounts.sso.service import COOKIE_PATH, PENDING_COOKIE

        response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)
        flash.add_flash(request, response, f"Your {linked} account is now linked.")
    return response


@router.post("/login/two-factor")
def challenge(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    code: FormStr = "",
    recovery_code: FormStr = "",
) -> Response:
    pending = _pending(request, settings, "challenge")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return _expired()
    recovery = bool(recovery_code) and not code
    limiter = request.app.state.rate_limiter
    try:
        security.check_challenge(limiter, user.id)
    except security.ChallengeThrottled as exc:
        return _challenge_page(
            request,
            session,
            user,
            recovery=recovery,
            error=exc.message,
            status=429,
            headers=exc.headers,
        )
    if recovery:
        if security.use_recovery_code(session, user, recovery_code):
            left = security.remaining_recovery_codes(session, user)
            audit.record(session, user, "two_factor.recovery_code_used", request, remaining=left)
            response = _finish(request, session, settings, user, pending, "recovery_code")
            flash.add_flash(
                request,
                response,
                f"You signed in with a recovery code; {left} left. "
                "Generate new ones in your security settings if you are running low.",
                "info",
            )
            return response
    elif security.verify_totp(session, settings.secret, user, code):
        return _finish(request, session, settings, user, pending, "totp")
    security.record_challenge_failure(limiter, user.id)
    audit.record(
        session, user, "two_factor.failed", request, factor="recovery_code" if recovery else "totp"
    )
    message = "Incorrect recovery code." if recovery else "Incorrect or already used code."
    return _challenge_page(request, session, user, recovery=recovery, error=message, status=422)


@router.post("/login/two-factor/webauthn/options")
def challenge_webauthn_options(
    request: Request, _: CsrfProtected, session: SessionDep, settings: SettingsDep
) -> Response:
    pending = _pending(request, settings, "challenge")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return JSONResponse({"message": "The sign-in has expired."}, 401)
    return JSONResponse(keys.authentication_options(session, settings, user))


@router.post("/login/two-factor/webauthn")
def challenge_webauthn(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    credential: Annotated[dict[str, Any], Body()],
) -> Response:
    pending = _pending(request, settings, "challenge")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return JSONResponse({"message": "The sign-in has expired."}, 401)
    limiter = request.app.state.rate_limiter
    try:
        security.check_challenge(limiter, user.id)
    except security.ChallengeThrottled as exc:
        return JSONResponse({"message": exc.message}, 429, headers=exc.headers)
    if keys.authenticate(session, settings, user, credential) is None:
        security.record_challenge_failure(limiter, user.id)
        audit.record(session, user, "two_factor.failed", request, factor="security_key")
        return JSONResponse({"message": "The security key could not be verified."}, 422)
    redirect = _finish(request, session, settings, user, pending, "security_key")
    if "location" not in redirect.headers:
        failure = getattr(redirect, "link_failure", None)
        message = failure.message if failure is not None else "The sign-in failed."
        return JSONResponse({"message": message}, redirect.status_code)
    response = JSONResponse({"location": redirect.headers["location"]})
    for name, value in redirect.raw_headers:
        if name == b"set-cookie":
            response.raw_headers.append((name, value))
    return response


# Enrolment required of site admins before anything else ----------------------------------------


def _enrol_page(
    request: Request, session: Session, settings: Settings, user: User, **context: Any
) -> Response:
    secret = security.pending_totp_secret(session, settings.secret, user)
    if secret is None:
        secret = security.start_totp_enrolment(session, settings.secret, user)
    uri = totp.provisioning_uri(secret, user.username, f"OpenCodeHub ({_host(settings)})")
    return render(
        request,
        "security/totp_setup.html",
        page_title="Set up two-factor authentication",
        action="/login/two-factor/enrol",
        required=True,
        qr_svg=totp.qr_svg(uri),
        secret=totp.format_secret(secret),
        error=context.pop("error", ""),
        errors=context.pop("errors", {}),
        status_code=context.pop("status", 200),
    )


@router.get("/login/two-factor/enrol")
def enrol_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    pending = _pending(request, settings, "enrol")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return _expired()
    return _enrol_page(request, session, settings, user)


@router.post("/login/two-factor/enrol")
def enrol(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    code: FormStr = "",
) -> Response:
    pending = _pending(request, settings, "enrol")
    user = _pending_user(session, pending) if pending else None
    if pending is None or user is None:
        return _expired()
    limiter = request.app.state.rate_limiter
    try:
        security.check_challenge(limiter, user.id)
        codes = security.confirm_totp(session, settings.secret, user, code)
    except security.ChallengeThrottled as exc:
        return _enrol_page(request, session, settings, user, error=exc.message, status=429)
    except ValidationFailed as exc:
        security.record_challenge_failure(limiter, user.id)
        return _enrol_page(request, session, settings, user, errors=field_errors(exc), status=422)
    audit.record(session, user, "two_factor.enabled", request, factor="totp")
    redirect = _finish(request, session, settings, user, pending, "totp")
    # The new codes are shown whatever happens next: they are never shown again. Should an
    # identity waiting to be linked have expired meanwhile, no session started; sign in again.
    response = render(
        request,
        "security/recovery_codes.html",
        page_title="Recovery codes",
        codes=codes or [],
        continue_url=redirect.headers.get("location", "/login"),
    )
    for name, value in redirect.raw_headers:
        if name == b"set-cookie":
            response.raw_headers.append((name, value))
    return response


# Settings: password and authentication ---------------------------------------------------------


def _security_page(
    request: Request, session: Session, settings: Settings, user: User, **context: Any
) -> Response:
    return render(
        request,
        "settings/security.html",
        page_title="Password and authentication",
        active="security",
        has_totp=security.has_totp(session, user),
        security_keys=keys.list_keys(session, user),
        recovery_left=security.remaining_recovery_codes(session, user),
        required=security.admin_needs_enrolment(session, user, settings.require_2fa_for_admins),
        error=context.pop("error", ""),
        errors=context.pop("errors", {}),
        status_code=context.pop("status", 200),
        **context,
    )


@router.get("/settings/security")
def security_settings(
    request: Request, user: WebUser, session: SessionDep, settings: SettingsDep
) -> Response:
    return _security_page(request, session, settings, user)


def _totp_setup_page(
    request: Request, session: Session, settings: Settings, user: User, secret: str, **context: Any
) -> Response:
    uri = totp.provisioning_uri(secret, user.username, f"OpenCodeHub ({_host(settings)})")
    return render(
        request,
        "security/totp_setup.html",
        page_title="Set up two-factor authentication",
        action="/settings/security/totp/confirm",
        required=False,
        qr_svg=totp.qr_svg(uri),
        secret=totp.format_secret(secret),
        error=context.pop("error", ""),
        errors=context.pop("errors", {}),
        status_code=context.pop("status", 200),
    )


@router.get("/settings/security/totp")
def totp_setup(
    request: Request, user: RequireSudo, session: SessionDep, settings: SettingsDep
) -> Response:
    if security.has_totp(session, user):
        return RedirectResponse("/settings/security", status_code=303)
    secret = security.pending_totp_secret(session, settings.secret, user)
    if secret is None:
        secret = security.start_totp_enrolment(session, settings.secret, user)
    return _totp_setup_page(request, session, settings, user, secret)


@router.post("/settings/security/totp/confirm")
def totp_confirm(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    settings: SettingsDep,
    code: FormStr = "",
) -> Response:
    limiter = request.app.state.rate_limiter
    try:
        security.check_challenge(limiter, user.id)
        codes = security.confirm_totp(session, settings.secret, user, code)
    except security.ChallengeThrottled as exc:
        secret = security.pending_totp_secret(session, settings.secret, user) or ""
        return _totp_setup_page(
            request, session, settings, user, secret, error=exc.message, status=429
        )
    except ValidationFailed as exc:
        security.record_challenge_failure(limiter, user.id)
        secret = security.pending_totp_secret(session, settings.secret, user)
        if secret is None:
            return RedirectResponse("/settings/security", status_code=303)
        return _totp_setup_page(
            request, session, settings, user, secret, errors=field_errors(exc), status=422
        )
    audit.record(session, user, "two_factor.enabled", request, factor="totp")
    if codes is None:
        return flash.redirect(
            request, "/settings/security", "Two-factor authentication with an app is enabled."
        )
    return render(
        request,
        "security/recovery_codes.html",
        page_title="Recovery codes",
        codes=codes,
        continue_url="/settings/security",
    )


@router.post("/settings/security/disable")
def two_factor_disable(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    if settings.require_2fa_for_admins and user.is_site_admin:
        return _security_page(
            request,
            session,
            settings,
            user,
            error="This site requires administrators to keep two-factor authentication on.",
            status=422,
        )
    security.disable_two_factor(session, user)
    audit.record(session, user, "two_factor.disabled", request)
    return flash.redirect(
        request, "/settings/security", "Two-factor authentication is disabled.", "info"
    )


@router.post("/settings/security/recovery-codes")
def recovery_codes_regenerate(
    request: Request, _: CsrfProtected, user: RequireSudo, session: SessionDep
) -> Response:
    if not security.has_two_factor(session, user):
        return RedirectResponse("/settings/security", status_code=303)
    codes = security.generate_recovery_codes(session, user)
    audit.record(session, user, "two_factor.recovery_codes_regenerated", request)
    return render(
        request,
        "security/recovery_codes.html",
        page_title="Recovery codes",
        codes=codes,
        continue_url="/settings/security",
    )


@router.post("/settings/security/keys/options")
def key_options(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    return JSONResponse(keys.registration_options(session, settings, user))


@router.post("/settings/security/keys")
def key_register(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[dict[str, Any], Body()],
) -> Response:
    name = body.get("name")
    credential = body.get("credential")
    if not isinstance(name, str) or not isinstance(credential, dict):
        return JSONResponse({"message": "Send a name and a credential."}, 422)
    first = not security.has_two_factor(session, user)
    try:
        key = keys.register(session, settings, user, name, credential)
    except ValidationFailed as exc:
        # Nothing was written but the spent challenge, which must stay spent: no rollback.
        return JSONResponse({"message": exc.describe(), "errors": field_errors(exc)}, 422)
    audit.record(session, user, "security_key.added", request, name=key.name, key_id=key.id)
    codes = security.first_recovery_codes(session, user)
    if first:
        audit.record(session, user, "two_factor.enabled", request, factor="security_key")
    return JSONResponse(
        {"id": key.id, "name": key.name, "recovery_codes": codes or []}, status_code=201
    )


@router.post("/settings/security/keys/{key_id}/delete")
def key_delete(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    settings: SettingsDep,
    key_id: int,
) -> Response:
    key = keys.remove_key(session, user, key_id)
    if security.admin_needs_enrolment(session, user, settings.require_2fa_for_admins):
        session.rollback()
        return _security_page(
            request,
            session,
            settings,
            user,
            error="This site requires administrators to keep a second factor: "
            "add another before removing this one.",
            status=422,
        )
    audit.record(session, user, "security_key.removed", request, name=key.name, key_id=key_id)
    if not security.has_two_factor(session, user):
        security.disable_two_factor(session, user)
        audit.record(session, user, "two_factor.disabled", request)
    return flash.redirect(request, "/settings/security", f"Security key “{key.name}” was removed.")


@router.post("/settings/security/sign-out-everywhere")
def sign_out_everywhere(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep
) -> Response:
    ended = security.sign_out_everywhere(session, user)
    audit.record(session, user, "user.sign_out_everywhere", request, sessions=ended)
    response = flash.redirect(request, "/login", "You were signed out everywhere.", "info")
    response.delete_cookie(accounts.SESSION_COOKIE, path="/")
    return response


# The security log -----------------------------------------------------------------------------


def _usernames(session: Session, events: list[Any]) -> dict[int, str]:
    ids = {event.user_id for event in events} | {event.actor_id for event in events}
    ids.discard(None)
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {row.id: row.username for row in rows}


@router.get("/settings/security-log")
def security_log(request: Request, user: WebUser, session: SessionDep, page: str = "1") -> Response:
    number = parse_page(page)
    events = audit.list_events(
        session, user_id=user.id, limit=LOG_PAGE_SIZE + 1, offset=(number - 1) * LOG_PAGE_SIZE
    )
    return render(
        request,
        "settings/security_log.html",
        page_title="Security log",
        active="audit",
        events=events[:LOG_PAGE_SIZE],
        usernames=_usernames(session, events),
        describe_event=audit.describe,
        previous_url=f"/settings/security-log?page={number - 1}" if number > 1 else None,
        next_url=f"/settings/security-log?page={number + 1}"
        if len(events) > LOG_PAGE_SIZE
        else None,
    )


@router.get("/-/admin/security-log")
def admin_security_log(
    request: Request,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    page: str = "1",
    event: str = "",
    login: str = "",
) -> Response:
    if not actor.is_site_admin:
        raise NotFound()
    number = parse_page(page)
    login = login.strip()[:39]
    event = event.strip()[:64]
    user_id = None
    if login:
        subject = accounts.get_user(session, login) if login.isprintable() else None
        user_id = subject.id if subject is not None else -1
    events = audit.list_events(
        session,
        user_id=user_id,
        event=event or None,
        limit=LOG_PAGE_SIZE + 1,
        offset=(number - 1) * LOG_PAGE_SIZE,
    )

    def page_url(target: int) -> str:
        query = {"page": str(target)}
        if login:
            query["login"] = login
        if event:
            query["event"] = event
        return f"/-/admin/security-log?{urlencode(query)}"

    return render(
        request,
        "security/admin_log.html",
        page_title="Security log · Site admin",
        events=events[:LOG_PAGE_SIZE],
        usernames=_usernames(session, events),
        login=login,
        event=event,
        known_events=audit.EVENTS,
        describe_event=audit.describe,
        previous_url=page_url(number - 1) if number > 1 else None,
        next_url=page_url(number + 1) if len(events) > LOG_PAGE_SIZE else None,
    )
