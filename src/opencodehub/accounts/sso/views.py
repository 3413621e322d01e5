"""Sign-in with external providers: redirects, callbacks, linking, settings pages, and the
site admin's pages for sign-in sources (`/-/admin/auth-sources`).

A failed sign-in renders an error page but returns normally, so the request's unit of work
commits: the used `state` stays used and the failure stays in the security log.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts import views as account_views
from opencodehub.accounts.models import User
from opencodehub.accounts.security import audit
from opencodehub.accounts.security import service as security
from opencodehub.accounts.security.sudo import require_sudo
from opencodehub.accounts.sso import service as sso
from opencodehub.accounts.sso.models import AuthSource, AuthSourceKind
from opencodehub.accounts.throttle import LoginThrottle, LoginThrottled, account_key
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.web import flash
from opencodehub.web.auth import WebUser, safe_next, web_session_of
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.templating import field_errors, render, templates

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
ADMIN_PATH = "/-/admin/auth-sources"
CONTINUE_PATH = "/login/sso/-/continue"


def _sign_in_buttons(request: Request) -> list[dict[str, str]]:
    """The enabled sources, for the sign-in page's buttons (`accounts/_sso_buttons.html`)."""
    with request.app.state.db.session() as session:
        return [
            {"slug": source.slug, "name": source.name, "kind": source.kind.value}
            for source in sso.list_sources(session, enabled_only=True)
        ]


templates.globals["sso_sign_in_sources"] = _sign_in_buttons


def _method(source: AuthSource | None) -> str:
    """How the first step of the sign-in went, for the security log ("oidc:corp")."""
    return f"{source.kind.value}:{source.slug}" if source is not None else "sso"


def _set_cookie(response: Response, settings: Settings, name: str, value: str, ttl: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=ttl,
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back, not on cross-site posts
        secure=settings.secure_cookies,
        path=sso.COOKIE_PATH,
    )


def _error_page(request: Request, message: str, status: int) -> Response:
    response = render(
        request,
        "sso/error.html",
        page_title="Sign-in failed",
        message=message,
        status_code=status,
    )
    response.delete_cookie(sso.STATE_COOKIE, path=sso.COOKIE_PATH)
    return response


def _redirect_to_provider(
    request: Request,
    session: Session,
    settings: Settings,
    source: AuthSource,
    next_path: str,
    user: User | None = None,
    sudo: bool = False,
) -> Response:
    try:
        url, state = sso.begin(session, settings, source, next_path=next_path, user=user, sudo=sudo)
    except sso.SSOFailed as exc:
        return _error_page(request, exc.message, exc.status_code)
    response = RedirectResponse(url, status_code=303)
    _set_cookie(response, settings, sso.STATE_COOKIE, state, int(sso.STATE_TTL.total_seconds()))
    return response


# Sign-in ----------------------------------------------------------------------------------------


@router.get("/login/sso/{slug}")
def start_sign_in(
    request: Request,
    slug: str,
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    next: str = "",
) -> Response:
    target = safe_next(next)
    if actor.user is not None:
        return RedirectResponse(target, status_code=303)
    source = sso.get_source(session, slug)
    return _redirect_to_provider(request, session, settings, source, target)


@router.get("/login/sso/{slug}/callback")
def callback(
    request: Request,
    slug: str,
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    state: str = "",
    code: str = "",
    error: str = "",
    iss: str = "",
) -> Response:
    try:
        outcome = sso.complete(
            session,
            settings,
            request,
            slug,
            state=state,
            cookie_state=request.cookies.get(sso.STATE_COOKIE, ""),
            code=code,
            error=error,
            issuer=iss,
            current_user=actor.user,
        )
    except sso.SSOFailed as exc:
        return _error_page(request, exc.message, exc.status_code)
    target = safe_next(outcome.next_path)
    response: Response
    if outcome.kind == "linked":
        assert outcome.source is not None
        response = flash.redirect(
            request,
            "/settings/linked-accounts",
            f"Your {outcome.source.name} account is now linked.",
        )
    elif outcome.kind == "reauthenticated":
        assert outcome.user is not None
        web_session = web_session_of(request)
        if web_session is None:
            return _error_page(request, "Sign in first.", 403)
        security.grant_sudo(session, web_session)
        audit.record(session, outcome.user, "sudo.granted", request, method=_method(outcome.source))
        response = RedirectResponse(target, status_code=303)
    elif outcome.kind == "sign_in":
        assert outcome.user is not None
        # The provider may have reused its own session: no fresh proof, so no sudo mode
        # (a second factor, when the account has one, still starts it).
        response = account_views.sign_in_response(
            request,
            session,
            settings,
            outcome.user.id,
            target,
            method=_method(outcome.source),
            sudo=False,
        )
    else:
        response = _finish_pending(request, session, settings, outcome.pending_token)
    response.delete_cookie(sso.STATE_COOKIE, path=sso.COOKIE_PATH)
    return response


def _finish_pending(request: Request, session: Session, settings: Settings, token: str) -> Response:
    """A provider account linked to nobody: create its account at once when nothing stands in
    the way, otherwise ask the person (another name, or link an existing account)."""
    pending = sso.get_pending(session, token)
    assert pending is not None
    choices = sso.choices_for(session, settings, pending)
    if choices.can_sign_up and choices.username_available:
        next_path = safe_next(pending.next_path)
        try:
            # Every check runs before the first write, so a refusal leaves nothing behind.
            user = sso.sign_up_pending(
                session, settings, request, pending, choices.proposed_username
            )
        except (sso.SSOFailed, ValidationFailed):
            pass  # a name taken meanwhile: let the person choose on the form
        else:
            response = account_views.sign_in_response(
                request,
                session,
                settings,
                user.id,
                next_path,
                method=_method(pending.source),
                sudo=False,
            )
            flash.add_flash(request, response, f"Welcome to OpenCodeHub, {user.username}!")
            return response
    response = RedirectResponse(CONTINUE_PATH, status_code=303)
    _set_cookie(response, settings, sso.PENDING_COOKIE, token, int(sso.PENDING_TTL.total_seconds()))
    return response


def _pending_of(request: Request, session: Session) -> Any:
    return sso.get_pending(session, request.cookies.get(sso.PENDING_COOKIE))


def _continue_page(
    request: Request,
    session: Session,
    settings: Settings,
    pending: Any,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    choices = sso.choices_for(session, settings, pending)
    form = context.pop("form", {})
    return render(
        request,
        "sso/continue.html",
        page_title="Finish signing in",
        pending=pending,
        choices=choices,
        form={"username": choices.proposed_username, **form},
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        link_error=context.pop("link_error", ""),
        status_code=status,
        **context,
    )


_EXPIRED = "This sign-in has expired. Start again from the sign-in page."


@router.get(CONTINUE_PATH)
def continue_form(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    pending = _pending_of(request, session)
    if pending is None:
        return _error_page(request, _EXPIRED, 400)
    return _continue_page(request, session, settings, pending)


@router.post(f"{CONTINUE_PATH}/signup")
def continue_signup(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    username: FormStr = "",
) -> Response:
    pending = _pending_of(request, session)
    if pending is None:
        return _error_page(request, _EXPIRED, 400)
    next_path = safe_next(pending.next_path)
    method = _method(pending.source)
    try:
        user = sso.sign_up_pending(session, settings, request, pending, username)
    except ValidationFailed as exc:
        session.rollback()
        pending = _pending_of(request, session)
        return _continue_page(
            request,
            session,
            settings,
            pending,
            form={"username": username[:100]},
            errors=field_errors(exc),
            error=exc.describe(),
            status=422,
        )
    except sso.SSOFailed as exc:
        session.rollback()
        pending = _pending_of(request, session)
        return _continue_page(
            request, session, settings, pending, error=exc.message, status=exc.status_code
        )
    response = account_views.sign_in_response(
        request, session, settings, user.id, next_path, method=method, sudo=False
    )
    response.delete_cookie(sso.PENDING_COOKIE, path=sso.COOKIE_PATH)
    flash.add_flash(request, response, f"Welcome to OpenCodeHub, {user.username}!")
    return response


@router.post(f"{CONTINUE_PATH}/link")
def continue_link(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    login: FormStr = "",
    password: FormStr = "",
) -> Response:
    pending = _pending_of(request, session)
    if pending is None:
        return _error_page(request, _EXPIRED, 400)
    throttle = LoginThrottle.from_settings(request.app.state.rate_limiter, settings)
    ip_address = account_views.client_ip(request)
    login = login.strip()[:254]
    key = account_key(session, login)
    try:
        throttle.check(ip_address, key)
    except LoginThrottled as exc:
        return _continue_page(
            request,
            session,
            settings,
            pending,
            link_error=exc.message,
            status=429,
            headers=exc.headers,
        )
    user = None
    if login and not any(ord(char) < 0x20 for char in login):
        user = accounts.authenticate_password(session, login, password)
    if user is None:
        throttle.record_failure(ip_address, key)
        audit.record(
            session,
            None,
            "sso.sign_in_failed",
            request,
            source=pending.source.slug,
            reason="wrong password while linking",
        )
        return _continue_page(
            request,
            session,
            settings,
            pending,
            link_error="Incorrect username, email or password.",
            status=422,
        )
    throttle.record_success(key)
    next_path = safe_next(pending.next_path)
    source_name = pending.source.name
    method = _method(pending.source)
    if account_views.second_step(session, settings, user) is not None:
        # The password alone proves too little for an account with a second factor (or an
        # admin who must enrol one): the identity is linked, and the session started, only
        # once that step succeeds (`security.views._finish`).
        return account_views.sign_in_response(
            request, session, settings, user.id, next_path, method=method, link=pending.id
        )
    try:
        sso.link_pending(session, request, pending, user)
    except sso.SSOFailed as exc:
        session.rollback()
        return _error_page(request, exc.message, exc.status_code)
    response = account_views.sign_in_response(
        request, session, settings, user.id, next_path, method=method
    )
    response.delete_cookie(sso.PENDING_COOKIE, path=sso.COOKIE_PATH)
    flash.add_flash(request, response, f"Your {source_name} account is now linked.")
    return response


# Sudo mode through a linked provider -------------------------------------------------------------


@router.post("/sudo/sso/{slug}")
def sudo_start(
    request: Request,
    _: CsrfProtected,
    slug: str,
    user: WebUser,
    session: SessionDep,
    settings: SettingsDep,
    next: FormStr = "",
) -> Response:
    """Re-authenticate with a provider linked to the account (an account without a password
    may have nothing else); the callback grants sudo mode and returns to `next`. Which
    providers may serve is `sso.may_reauthenticate_with`'s decision (checked in `sso.begin`)."""
    if web_session_of(request) is None:
        return _error_page(request, "Sign in first.", 403)
    source = sso.get_source(session, slug)
    if source.id not in {identity.source_id for identity in sso.list_identities(session, user)}:
        raise NotFound()
    return _redirect_to_provider(
        request, session, settings, source, safe_next(next), user=user, sudo=True
    )


# Settings: linked accounts ----------------------------------------------------------------------


def _linked_page(
    request: Request, session: Session, user: User, *, status: int = 200, error: str = ""
) -> Response:
    identities = sso.list_identities(session, user)
    linked_ids = {identity.source_id for identity in identities}
    available = [
        source
        for source in sso.list_sources(session, enabled_only=True)
        if source.id not in linked_ids
    ]
    return render(
        request,
        "sso/linked_accounts.html",
        page_title="Linked accounts",
        active="linked",
        identities=identities,
        available=available,
        has_password=bool(user.password_hash),
        error=error,
        status_code=status,
    )


@router.get("/settings/linked-accounts")
def linked_accounts(request: Request, user: WebUser, session: SessionDep) -> Response:
    return _linked_page(request, session, user)


@router.post("/settings/linked-accounts/link/{slug}")
def link_start(
    request: Request,
    _: CsrfProtected,
    slug: str,
    user: WebUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    source = sso.get_source(session, slug)
    return _redirect_to_provider(
        request, session, settings, source, "/settings/linked-accounts", user=user
    )


@router.post("/settings/linked-accounts/{identity_id}/unlink")
def unlink(
    request: Request, _: CsrfProtected, identity_id: int, user: WebUser, session: SessionDep
) -> Response:
    try:
        source = sso.unlink(session, request, user, identity_id)
    except ValidationFailed as exc:
        session.rollback()
        return _linked_page(request, session, user, status=422, error=exc.describe())
    return flash.redirect(
        request, "/settings/linked-accounts", f"Your {source.name} account was unlinked."
    )


# Site admin: sign-in sources -------------------------------------------------------------------


def _admin(user: User) -> User:
    return sso.require_site_admin(user)


def _admin_in_sudo(request: Request, user: WebUser, session: SessionDep) -> User:
    """A site admin in sudo mode: changing sign-in sources decides who can become whom. The
    admin check comes first, so anyone else still finds nothing here."""
    _admin(user)
    return require_sudo(request, user, session)


AdminInSudo = Annotated[User, Depends(_admin_in_sudo)]


def _admin_page(
    request: Request,
    session: Session,
    *,
    source: AuthSource | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
    errors: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    if form is None:
        form = _form_of(source) if source is not None else {"kind": "oidc", "enabled": True}
    return render(
        request,
        "sso/admin.html",
        page_title="Sign-in sources",
        sources=sso.list_sources(session),
        source=source,
        form=form,
        kinds=[kind.value for kind in AuthSourceKind],
        errors=errors or {},
        error=error,
        status_code=status,
    )


def _form_of(source: AuthSource) -> dict[str, Any]:
    return {
        "name": source.name,
        "slug": source.slug,
        "kind": source.kind.value,
        "client_id": source.client_id,
        "scopes": source.scopes,
        "discovery_url": source.discovery_url,
        "base_url": source.base_url,
        "api_url": source.api_url,
        "enabled": source.enabled,
        "allowed_domains": ", ".join(source.domain_list),
        "required_group": source.required_group,
        "org_mapping": "\n".join(f"{k}={v}" for k, v in (source.org_mapping or {}).items()),
    }


def _admin_fields(form: dict[str, Any]) -> dict[str, Any]:
    fields = {key: value for key, value in form.items() if key != "org_mapping"}
    fields["org_mapping"] = sso.parse_mapping(form.get("org_mapping", ""))
    return fields


@router.get(ADMIN_PATH)
def admin_sources(request: Request, user: WebUser, session: SessionDep) -> Response:
    _admin(user)
    return _admin_page(request, session)


def _submitted(
    name: str,
    slug: str,
    kind: str,
    client_id: str,
    client_secret: str,
    scopes: str,
    discovery_url: str,
    base_url: str,
    api_url: str,
    enabled: str,
    allowed_domains: str,
    required_group: str,
    org_mapping: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "slug": slug,
        "kind": kind,
        "client_id": client_id,
        "client_secret": client_secret,
        "scopes": scopes,
        "discovery_url": discovery_url,
        "base_url": base_url,
        "api_url": api_url,
        "enabled": enabled == "on",
        "allowed_domains": allowed_domains,
        "required_group": required_group,
        "org_mapping": org_mapping,
    }


@router.post(ADMIN_PATH)
def admin_create(
    request: Request,
    _: CsrfProtected,
    user: AdminInSudo,
    session: SessionDep,
    settings: SettingsDep,
    name: FormStr = "",
    slug: FormStr = "",
    kind: FormStr = "",
    client_id: FormStr = "",
    client_secret: FormStr = "",
    scopes: FormStr = "",
    discovery_url: FormStr = "",
    base_url: FormStr = "",
    api_url: FormStr = "",
    enabled: FormStr = "",
    allowed_domains: FormStr = "",
    required_group: FormStr = "",
    org_mapping: FormStr = "",
) -> Response:
    _admin(user)
    form = _submitted(
        name,
        slug,
        kind,
        client_id,
        client_secret,
        scopes,
        discovery_url,
        base_url,
        api_url,
        enabled,
        allowed_domains,
        required_group,
        org_mapping,
    )
    try:
        source = sso.create_source(session, settings.secret, **_admin_fields(form))
    except ValidationFailed as exc:
        session.rollback()
        shown = {key: value for key, value in form.items() if key != "client_secret"}
        return _admin_page(
            request, session, form=shown, status=422, errors=field_errors(exc), error=exc.describe()
        )
    return flash.redirect(request, ADMIN_PATH, f"Sign-in source {source.name} was added.")


@router.get(ADMIN_PATH + "/{source_id}")
def admin_edit(request: Request, source_id: int, user: WebUser, session: SessionDep) -> Response:
    _admin(user)
    return _admin_page(request, session, source=sso.get_source(session, source_id))


@router.post(ADMIN_PATH + "/{source_id}")
def admin_update(
    request: Request,
    _: CsrfProtected,
    source_id: int,
    user: AdminInSudo,
    session: SessionDep,
    settings: SettingsDep,
    name: FormStr = "",
    slug: FormStr = "",
    kind: FormStr = "",
    client_id: FormStr = "",
    client_secret: FormStr = "",
    scopes: FormStr = "",
    discovery_url: FormStr = "",
    base_url: FormStr = "",
    api_url: FormStr = "",
    enabled: FormStr = "",
    allowed_domains: FormStr = "",
    required_group: FormStr = "",
    org_mapping: FormStr = "",
) -> Response:
    _admin(user)
    source = sso.get_source(session, source_id)
    form = _submitted(
        name,
        slug,
        kind,
        client_id,
        client_secret,
        scopes,
        discovery_url,
        base_url,
        api_url,
        enabled,
        allowed_domains,
        required_group,
        org_mapping,
    )
    try:
        sso.update_source(session, settings.secret, source, **_admin_fields(form))
    except ValidationFailed as exc:
        session.rollback()
        shown = {key: value for key, value in form.items() if key != "client_secret"}
        return _admin_page(
            request,
            session,
            source=sso.get_source(session, source_id),
            form=shown,
            status=422,
            errors=field_errors(exc),
            error=exc.describe(),
        )
    return flash.redirect(request, ADMIN_PATH, f"Sign-in source {source.name} was saved.")


@router.post(ADMIN_PATH + "/{source_id}/delete")
def admin_delete(
    request: Request, _: CsrfProtected, source_id: int, user: AdminInSudo, session: SessionDep
) -> Response:
    _admin(user)
    source = sso.get_source(session, source_id)
    name = source.name
    sso.delete_source(session, source)
    return flash.redirect(request, ADMIN_PATH, f"Sign-in source {name} was removed.")
