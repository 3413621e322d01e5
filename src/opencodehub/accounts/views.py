"""HTML routes: sign-up, sign-in, sign-out, account settings, organizations and teams, and the
user and organization profile pages (`/{owner}`, the last route).

Routes are thin: parse the form, call `accounts.service`, render. A service's `ValidationFailed`
re-renders the form with the field's message (status 422); every POST is CSRF-protected.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.convertors import Convertor, register_url_convertor

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import SCOPE_IMPLIES, Actor, expand_scopes
from opencodehub.accounts.models import AccountKind, OrgRole, Permission, Team, User
from opencodehub.accounts.names import RESERVED_USERNAMES, USERNAME_RE
from opencodehub.accounts.security import audit, sudo
from opencodehub.accounts.security import service as security
from opencodehub.accounts.security.sudo import RequireSudo
from opencodehub.accounts.throttle import LoginThrottle, LoginThrottled, account_key
from opencodehub.config import Settings
from opencodehub.core.errors import FieldError, NotFound, ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import utcnow
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.repos import service as repos
from opencodehub.repos.authz import authorize, can
from opencodehub.web import flash
from opencodehub.web.auth import WebUser, safe_next, web_session_of
from opencodehub.web.csrf import ANONYMOUS_COOKIE, CsrfProtected
from opencodehub.web.templating import field_errors, render
from opencodehub.web.views import MAX_PAGE, parse_page

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]


def _lookup_safe(value: str) -> bool:
    """Whether a name from a form or a path may be looked up at all: control characters (NUL
    among them, which PostgreSQL refuses outright) never name an account, team or email."""
    return 0 < len(value) <= 254 and not any(ord(char) < 0x20 for char in value)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def set_session_cookie(response: Response, settings: Settings, value: str) -> None:
    response.set_cookie(
        accounts.SESSION_COOKIE,
        value,
        max_age=settings.session_max_age_days * 86_400,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def sign_in_response(
    request: Request,
    session: Session,
    settings: Settings,
    user_id: int,
    target: str,
    *,
    method: str = "password",
    link: int = 0,
    sudo: bool = True,
) -> RedirectResponse:
    """Finish the first step of a sign-in (password, external provider) and redirect.

    An account with a second factor is sent to the two-factor challenge, a site admin who must
    have one (`require_2fa_for_admins`) to enrol it; the browser then holds only a signed,
    five-minute "pending sign-in" cookie, and the real session starts after that step. Every
    other account gets a fresh browser session now. `method` names the first step in the
    security log ("password", "github", "oidc:corp", …). `link` names an external identity
    waiting to be linked after that second step (the caller links it itself when there is none).
    `sudo=False`: a first step that proves no fresh sign-in (an external provider may reuse
    its own session) starts no sudo mode unless a second factor follows.
    """
    user = session.get(User, user_id)
    assert user is not None
    purpose = second_step(session, settings, user)
    if purpose is None:
        return start_signed_in_session(
            request, session, settings, user, target, method=method, sudo=sudo
        )
    pending = security.new_pending(settings.secret, user.id, method, target, purpose, link=link)
    location = "/login/two-factor" if purpose == "challenge" else "/login/two-factor/enrol"
    response = RedirectResponse(location, status_code=303)
    # The browser's old session ends now: a half-finished sign-in must not leave it usable.
    accounts.end_web_session(session, request.cookies.get(accounts.SESSION_COOKIE))
    response.delete_cookie(accounts.SESSION_COOKIE, path="/")
    response.set_cookie(
        security.PENDING_COOKIE,
        pending,
        max_age=security.PENDING_LIFETIME_SECONDS,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


def second_step(session: Session, settings: Settings, user: User) -> str | None:
    """What a sign-in to `user` still needs after its first step: "challenge" (a second factor),
    "enrol" (an admin who must set one up first) or None."""
    if security.has_two_factor(session, user):
        return "challenge"
    if security.admin_needs_enrolment(session, user, settings.require_2fa_for_admins):
        return "enrol"
    return None


def start_signed_in_session(
    request: Request,
    session: Session,
    settings: Settings,
    user: User,
    target: str,
    *,
    method: str,
    second_factor: str | None = None,
    sudo: bool = True,
) -> RedirectResponse:
    """Start a fresh browser session (ending the one the browser had), log it, and redirect."""
    accounts.end_web_session(session, request.cookies.get(accounts.SESSION_COOKIE))
    web_session, cookie_value = accounts.start_web_session(
        session,
        user,
        max_age_days=settings.session_max_age_days,
        ip_address=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    # Having just proved who they are, the user is in sudo mode for its first minutes.
    if sudo:
        security.grant_sudo(session, web_session)
    details: dict[str, Any] = {"method": method}
    if second_factor:
        details["two_factor"] = second_factor
    audit.record(session, user, "user.sign_in", request, **details)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, settings, cookie_value)
    # The anonymous double-submit nonce has served its purpose; signed-in forms use the session.
    response.delete_cookie(ANONYMOUS_COOKIE, path="/")
    response.delete_cookie(security.PENDING_COOKIE, path="/")
    return response


# Sign-up ---------------------------------------------------------------------------------------


def _signup_closed(request: Request) -> Response:
    return render(
        request, "accounts/signup.html", page_title="Sign up", closed=True, status_code=403
    )


@router.get("/signup")
def signup_form(request: Request, actor: CurrentActor, settings: SettingsDep) -> Response:
    if actor.user is not None:
        return RedirectResponse("/", status_code=303)
    if not settings.allow_signup:
        return _signup_closed(request)
    return render(request, "accounts/signup.html", page_title="Sign up", form={}, errors={})


@router.post("/signup")
def signup(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    username: FormStr = "",
    email: FormStr = "",
    password: FormStr = "",
) -> Response:
    if not settings.allow_signup:
        return _signup_closed(request)
    try:
        user = accounts.sign_up(session, username.strip(), email.strip(), password)
    except ValidationFailed as exc:
        session.rollback()
        return render(
            request,
            "accounts/signup.html",
            page_title="Sign up",
            form={"username": username[:100], "email": email[:300]},
            errors=field_errors(exc),
            error=exc.describe(),
            status_code=422,
        )
    response = sign_in_response(request, session, settings, user.id, "/")
    flash.add_flash(request, response, f"Welcome to OpenCodeHub, {user.username}!")
    return response


# Sign-in / sign-out ----------------------------------------------------------------------------


def _login_page(
    request: Request,
    *,
    login: str = "",
    next_path: str = "",
    error: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "accounts/login.html",
        page_title="Sign in",
        login=login[:254],
        next_path=next_path,
        error=error,
        status_code=status,
        headers=headers,
    )


@router.get("/login")
def login_form(request: Request, actor: CurrentActor, next: str = "") -> Response:
    target = safe_next(next)
    if actor.user is not None:
        return RedirectResponse(target, status_code=303)
    return _login_page(request, next_path=target if target != "/" else "")


@router.post("/login")
def login(
    request: Request,
    _: CsrfProtected,
    session: SessionDep,
    settings: SettingsDep,
    login: FormStr = "",
    password: FormStr = "",
    next: FormStr = "",
) -> Response:
    target = safe_next(next)
    shown_next = target if target != "/" else ""
    throttle = LoginThrottle.from_settings(request.app.state.rate_limiter, settings)
    ip_address = client_ip(request)
    key = account_key(session, login)
    try:
        throttle.check(ip_address, key)
    except LoginThrottled as exc:
        return _login_page(
            request,
            login=login,
            next_path=shown_next,
            error=exc.message,
            status=429,
            headers=exc.headers,
        )
    login = login.strip()
    user = accounts.authenticate_password(session, login, password) if _lookup_safe(login) else None
    if user is None:
        throttle.record_failure(ip_address, key)
        audit.record(
            session,
            _account_named(session, login),
            "user.failed_sign_in",
            request,
            method="password",
            login=login[:100],
        )
        return _login_page(
            request,
            login=login,
            next_path=shown_next,
            error="Incorrect username, email or password.",
            status=422,
        )
    throttle.record_success(key)
    return sign_in_response(request, session, settings, user.id, target)


def _account_named(session: Session, login: str) -> User | None:
    if not _lookup_safe(login):
        return None
    if "@" in login:
        return accounts.get_user_by_email(session, login)
    return accounts.get_user(session, login)


@router.post("/logout")
def logout(request: Request, _: CsrfProtected, session: SessionDep) -> Response:
    accounts.end_web_session(session, request.cookies.get(accounts.SESSION_COOKIE))
    response = flash.redirect(request, "/", "You have signed out.", "info")
    response.delete_cookie(accounts.SESSION_COOKIE, path="/")
    return response


# Settings --------------------------------------------------------------------------------------

TOKEN_EXPIRY_CHOICES: list[tuple[str, str]] = [
    ("7", "7 days"),
    ("30", "30 days"),
    ("60", "60 days"),
    ("90", "90 days"),
    ("365", "1 year"),
    ("never", "No expiration"),
]


def _settings(
    request: Request, template: str, title: str, active: str, *, status: int = 200, **context: Any
) -> Response:
    return render(
        request,
        f"settings/{template}",
        page_title=title,
        active=active,
        status_code=status,
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        **context,
    )


def _invalid(session: Session, exc: ValidationFailed) -> dict[str, Any]:
    """Undo anything the failed call flushed; the form is shown again with the messages."""
    session.rollback()
    return {"errors": field_errors(exc), "error": exc.describe(), "status": 422}


@router.get("/settings")
def settings_index(user: WebUser) -> Response:
    return RedirectResponse("/settings/profile", status_code=303)


def _profile_page(request: Request, user: User, **context: Any) -> Response:
    form = context.pop("form", None) or {
        "full_name": user.full_name,
        "bio": user.bio,
        "company": user.company,
        "location": user.location,
        "website": user.website,
        "public_email": user.public_email,
    }
    return _settings(request, "profile.html", "Public profile", "profile", form=form, **context)


@router.get("/settings/profile")
def profile_form(request: Request, user: WebUser) -> Response:
    return _profile_page(request, user)


@router.post("/settings/profile")
def profile_update(
    request: Request,
    _: CsrfProtected,
    user: WebUser,
    session: SessionDep,
    full_name: FormStr = "",
    bio: FormStr = "",
    company: FormStr = "",
    location: FormStr = "",
    website: FormStr = "",
    public_email: FormStr = "",
) -> Response:
    form = {
        "full_name": full_name,
        "bio": bio,
        "company": company,
        "location": location,
        "website": website,
        "public_email": public_email,
    }
    try:
        accounts.update_profile(session, user, **form)
    except ValidationFailed as exc:
        return _profile_page(request, user, form=form, **_invalid(session, exc))
    return flash.redirect(request, "/settings/profile", "Your profile was updated.")


@router.get("/settings/password")
def password_form(request: Request, user: WebUser) -> Response:
    return _settings(request, "password.html", "Password", "password")


@router.post("/settings/password")
def password_update(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    current_password: FormStr = "",
    new_password: FormStr = "",
    confirm_password: FormStr = "",
) -> Response:
    try:
        if new_password != confirm_password:
            raise ValidationFailed.invalid(
                "User", "confirm_password", "does not match the new password"
            )
        first = not user.password_hash
        accounts.change_password(session, user, current_password, new_password)
    except ValidationFailed as exc:
        return _settings(request, "password.html", "Password", "password", **_invalid(session, exc))
    if first:
        # An account created through a provider (or by an admin) without one; sudo mode was
        # entered through that provider or a second factor.
        audit.record(session, user, "user.password_set", request)
        return flash.redirect(
            request, "/settings/password", "Your password was set. You can now sign in with it."
        )
    # A changed password should lock out whoever knew the old one: end the other sessions.
    current = web_session_of(request)
    ended = accounts.revoke_all_web_sessions(
        session, user, except_id=current.id if current else None
    )
    audit.record(session, user, "password.changed", request, other_sessions_ended=ended)
    message = "Your password was changed."
    if ended:
        message += f" {ended} other session{'s' if ended != 1 else ''} signed out."
    return flash.redirect(request, "/settings/password", message)


# Emails


def _emails_page(request: Request, user: User, **context: Any) -> Response:
    return _settings(
        request,
        "emails.html",
        "Emails",
        "emails",
        emails=sorted(user.emails, key=lambda email: (not email.is_primary, email.id)),
        **context,
    )


@router.get("/settings/emails")
def emails_list(request: Request, user: WebUser) -> Response:
    return _emails_page(request, user, form={})


@router.post("/settings/emails")
def email_add(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, email: FormStr = ""
) -> Response:
    try:
        added = accounts.add_email(session, user, email)
    except ValidationFailed as exc:
        return _emails_page(request, user, form={"email": email[:300]}, **_invalid(session, exc))
    return flash.redirect(request, "/settings/emails", f"{added.email} was added.")


@router.post("/settings/emails/{email_id}/primary")
def email_make_primary(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, email_id: int
) -> Response:
    chosen = accounts.set_primary_email(session, user, email_id)
    return flash.redirect(request, "/settings/emails", f"{chosen.email} is now your primary email.")


@router.post("/settings/emails/{email_id}/delete")
def email_remove(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, email_id: int
) -> Response:
    try:
        accounts.remove_email(session, user, email_id)
    except ValidationFailed as exc:
        return _emails_page(request, user, form={}, **_invalid(session, exc))
    return flash.redirect(request, "/settings/emails", "The email address was removed.")


# SSH keys


def _keys_page(request: Request, session: Session, user: User, **context: Any) -> Response:
    return _settings(
        request,
        "keys.html",
        "SSH keys",
        "keys",
        keys=accounts.list_ssh_keys(session, user),
        **context,
    )


@router.get("/settings/keys")
def keys_list(request: Request, user: WebUser, session: SessionDep) -> Response:
    return _keys_page(request, session, user, form={})


@router.post("/settings/keys")
def key_add(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    title: FormStr = "",
    key: FormStr = "",
) -> Response:
    try:
        added = accounts.add_ssh_key(session, user, title, key)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _keys_page(
            request, session, user, form={"title": title[:300], "key": key[:10_000]}, **context
        )
    audit.record(
        session,
        user,
        "ssh_key.added",
        request,
        key_id=added.id,
        title=added.title,
        fingerprint=added.fingerprint,
    )
    return flash.redirect(request, "/settings/keys", f"SSH key “{added.title}” was added.")


@router.post("/settings/keys/{key_id}/delete")
def key_delete(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, key_id: int
) -> Response:
    removed = accounts.get_ssh_key(session, user, key_id)
    details = {"key_id": removed.id, "title": removed.title, "fingerprint": removed.fingerprint}
    accounts.delete_ssh_key(session, user, key_id)
    audit.record(session, user, "ssh_key.removed", request, **details)
    return flash.redirect(request, "/settings/keys", "The SSH key was deleted.")


# Personal access tokens


def _scope_groups() -> list[tuple[str, list[str]]]:
    """Each top-level scope (one no other scope implies) with every narrower scope it implies,
    so each scope appears exactly once on the form."""
    implied_by_others = frozenset().union(*SCOPE_IMPLIES.values())
    return [
        (scope, sorted(expand_scopes([scope]) - {scope}))
        for scope in SCOPE_IMPLIES
        if scope not in implied_by_others
    ]


def _tokens_page(request: Request, session: Session, user: User, **context: Any) -> Response:
    return _settings(
        request,
        "tokens.html",
        "Personal access tokens",
        "tokens",
        tokens=accounts.list_tokens(session, user),
        scope_groups=_scope_groups(),
        expiry_choices=TOKEN_EXPIRY_CHOICES,
        now=utcnow(),
        **context,
    )


@router.get("/settings/tokens")
def tokens_list(request: Request, user: WebUser, session: SessionDep) -> Response:
    return _tokens_page(request, session, user, form={"expires": "30", "scopes": []})


@router.post("/settings/tokens")
def token_create(
    request: Request,
    _: CsrfProtected,
    user: RequireSudo,
    session: SessionDep,
    note: FormStr = "",
    expires: FormStr = "30",
    scopes: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
) -> Response:
    form = {"note": note[:300], "expires": expires, "scopes": scopes[:50]}
    try:
        expires_days = _parse_expiry(expires)
        token, plaintext = accounts.create_token(session, user, note, scopes, expires_days)
    except ValidationFailed as exc:
        return _tokens_page(request, session, user, form=form, **_invalid(session, exc))
    audit.record(
        session, user, "token.created", request, token_id=token.id, name=token.name, scopes=scopes
    )
    # Shown in this response only: the token is never stored and never sent again.
    return _tokens_page(
        request,
        session,
        user,
        form={"expires": "30", "scopes": []},
        new_token=plaintext,
        new_token_id=token.id,
        status=201,
    )


def _parse_expiry(value: str) -> int | None:
    if value == "never":
        return None
    if value not in {choice for choice, _ in TOKEN_EXPIRY_CHOICES}:
        raise ValidationFailed.invalid("OauthAccess", "expires", "choose one of the listed periods")
    return int(value)


@router.post("/settings/tokens/{token_id}/revoke")
def token_revoke(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, token_id: int
) -> Response:
    accounts.revoke_token(session, user, token_id)
    audit.record(session, user, "token.revoked", request, token_id=token_id)
    return flash.redirect(request, "/settings/tokens", "The token was revoked.")


# Browser sessions


@router.get("/settings/sessions")
def sessions_list(request: Request, user: WebUser, session: SessionDep) -> Response:
    current = web_session_of(request)
    return _settings(
        request,
        "sessions.html",
        "Sessions",
        "sessions",
        web_sessions=accounts.list_web_sessions(session, user),
        current_session_id=current.id if current else None,
    )


@router.post("/settings/sessions/{session_id}/revoke")
def session_revoke(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, session_id: int
) -> Response:
    current = web_session_of(request)
    accounts.revoke_web_session(session, user, session_id)
    if current is not None and current.id == session_id:
        response = flash.redirect(request, "/login", "You have signed out.", "info")
        response.delete_cookie(accounts.SESSION_COOKIE, path="/")
        return response
    return flash.redirect(request, "/settings/sessions", "The session was signed out.")


@router.post("/settings/sessions/revoke-others")
def sessions_revoke_others(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep
) -> Response:
    current = web_session_of(request)
    ended = accounts.revoke_all_web_sessions(
        session, user, except_id=current.id if current else None
    )
    return flash.redirect(
        request,
        "/settings/sessions",
        f"Signed out of {ended} other session{'s' if ended != 1 else ''}.",
    )


# Organizations ---------------------------------------------------------------------------------


@router.get("/organizations/new")
def organization_form(request: Request, user: WebUser) -> Response:
    return render(request, "orgs/new.html", page_title="New organization", form={}, errors={})


@router.post("/organizations/new")
def organization_create(
    request: Request,
    _: CsrfProtected,
    user: WebUser,
    session: SessionDep,
    login: FormStr = "",
    full_name: FormStr = "",
    email: FormStr = "",
) -> Response:
    try:
        org = accounts.create_organization(
            session, user, login.strip(), full_name=full_name, email=email
        )
    except ValidationFailed as exc:
        invalid = _invalid(session, exc)
        return render(
            request,
            "orgs/new.html",
            page_title="New organization",
            form={"login": login[:100], "full_name": full_name[:300], "email": email[:300]},
            errors=invalid["errors"],
            error=invalid["error"],
            status_code=422,
        )
    return flash.redirect(
        request, f"/orgs/{org.username}/people", f"Organization {org.username} was created."
    )


def _org_for(session: Session, actor: Actor, name: str, action: str) -> User:
    """The organization, if the actor may do `action` on it (NotFound when it may not see it)."""
    org = accounts.get_organization(session, name) if _lookup_safe(name) else None
    if org is None:
        raise NotFound()
    authorize(session, actor, org, action)
    return org


def _parse_org_role(value: str) -> OrgRole:
    try:
        return OrgRole(value)
    except ValueError:
        raise ValidationFailed.invalid(
            "Membership", "role", "must be 'owner' or 'member'"
        ) from None


def _user_named(username: str, resource: str, session: Session) -> User:
    username = username.strip()
    user = accounts.get_user(session, username) if _lookup_safe(username) else None
    if user is None:
        raise ValidationFailed(
            FieldError(resource, "user", "invalid", f"there is no user named '{username[:60]}'")
        )
    return user


def _people_page(
    request: Request, session: Session, actor: Actor, org: User, **context: Any
) -> Response:
    owners = {owner.id for owner in accounts.list_org_members(session, org, OrgRole.OWNER)}
    members = [
        (member, OrgRole.OWNER if member.id in owners else OrgRole.MEMBER)
        for member in accounts.list_org_members(session, org)
    ]
    status = context.pop("status", 200)
    return render(
        request,
        "orgs/people.html",
        page_title=f"People · {org.username}",
        org=org,
        org_tab="people",
        members=members,
        roles=[role.value for role in OrgRole],
        is_owner=can(session, actor, org, "admin"),
        form=context.pop("form", {}),
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=status,
        **context,
    )


@router.get("/orgs/{org_name}/people")
def org_people(
    request: Request, org_name: str, user: WebUser, actor: CurrentActor, session: SessionDep
) -> Response:
    org = _org_for(session, actor, org_name, "member")
    return _people_page(request, session, actor, org)


@router.post("/orgs/{org_name}/people")
def org_people_add(
    request: Request,
    org_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    username: FormStr = "",
    role: FormStr = "member",
) -> Response:
    org = _org_for(session, actor, org_name, "admin")
    try:
        member = _user_named(username, "Membership", session)
        accounts.add_org_member(session, org, member, _parse_org_role(role))
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _people_page(
            request, session, actor, org, form={"username": username[:60], "role": role}, **context
        )
    return flash.redirect(
        request, f"/orgs/{org.username}/people", f"{member.username} was added as {role}."
    )


@router.post("/orgs/{org_name}/people/{username}/role")
def org_people_role(
    request: Request,
    org_name: str,
    username: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    role: FormStr = "",
) -> Response:
    org = _org_for(session, actor, org_name, "admin")
    member = accounts.get_user(session, username) if _lookup_safe(username) else None
    if member is None:
        raise NotFound()
    try:
        accounts.set_org_role(session, org, member, _parse_org_role(role))
    except ValidationFailed as exc:
        return _people_page(request, session, actor, org, **_invalid(session, exc))
    return flash.redirect(
        request, f"/orgs/{org.username}/people", f"{member.username} is now {role}."
    )


@router.post("/orgs/{org_name}/people/{username}/remove")
def org_people_remove(
    request: Request,
    org_name: str,
    username: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    org = _org_for(session, actor, org_name, "admin")
    member = accounts.get_user(session, username) if _lookup_safe(username) else None
    if member is None:
        raise NotFound()
    try:
        accounts.remove_org_member(session, org, member)
    except ValidationFailed as exc:
        return _people_page(request, session, actor, org, **_invalid(session, exc))
    return flash.redirect(
        request, f"/orgs/{org.username}/people", f"{member.username} was removed."
    )


# Teams


def _teams_page(
    request: Request, session: Session, actor: Actor, org: User, **context: Any
) -> Response:
    teams = [
        (team, accounts.count_team_members(session, team))
        for team in accounts.list_teams(session, org)
    ]
    return render(
        request,
        "orgs/teams.html",
        page_title=f"Teams · {org.username}",
        org=org,
        org_tab="teams",
        teams=teams,
        permissions=[permission.value for permission in Permission],
        privacies=list(accounts.TEAM_PRIVACY),
        is_owner=can(session, actor, org, "admin"),
        form=context.pop("form", {"permission": "read", "privacy": "closed"}),
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=context.pop("status", 200),
        **context,
    )


@router.get("/orgs/{org_name}/teams")
def org_teams(
    request: Request, org_name: str, user: WebUser, actor: CurrentActor, session: SessionDep
) -> Response:
    org = _org_for(session, actor, org_name, "member")
    return _teams_page(request, session, actor, org)


@router.post("/orgs/{org_name}/teams")
def org_team_create(
    request: Request,
    org_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    name: FormStr = "",
    description: FormStr = "",
    permission: FormStr = "read",
    privacy: FormStr = "closed",
) -> Response:
    org = _org_for(session, actor, org_name, "admin")
    form = {
        "name": name[:300],
        "description": description[:2000],
        "permission": permission,
        "privacy": privacy,
    }
    try:
        if permission not in {level.value for level in Permission}:
            raise ValidationFailed.invalid("Team", "permission", "is not a permission")
        team = accounts.create_team(
            session,
            org,
            name,
            description=description,
            permission=Permission(permission),
            privacy=privacy,
        )
    except ValidationFailed as exc:
        return _teams_page(request, session, actor, org, form=form, **_invalid(session, exc))
    return flash.redirect(
        request, f"/orgs/{org.username}/teams/{team.slug}", f"Team {team.name} was created."
    )


def _team_for(session: Session, org: User, slug: str) -> Team:
    team = accounts.get_team(session, org, slug) if _lookup_safe(slug) else None
    if team is None:
        raise NotFound()
    return team


def _team_page(
    request: Request, session: Session, actor: Actor, org: User, team: Team, **context: Any
) -> Response:
    members = []
    for member in accounts.list_team_members(session, team):
        membership = accounts.get_team_membership(session, team, member)
        members.append((member, membership.role if membership else "member"))
    return render(
        request,
        "orgs/team.html",
        page_title=f"{team.name} · {org.username}",
        org=org,
        org_tab="teams",
        team=team,
        members=members,
        team_roles=list(accounts.TEAM_ROLES),
        is_owner=can(session, actor, org, "admin"),
        form=context.pop("form", {"role": "member"}),
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=context.pop("status", 200),
        **context,
    )


@router.get("/orgs/{org_name}/teams/{team_slug}")
def org_team(
    request: Request,
    org_name: str,
    team_slug: str,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    org = _org_for(session, actor, org_name, "member")
    return _team_page(request, session, actor, org, _team_for(session, org, team_slug))


@router.post("/orgs/{org_name}/teams/{team_slug}/members")
def org_team_member_add(
    request: Request,
    org_name: str,
    team_slug: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    username: FormStr = "",
    role: FormStr = "member",
) -> Response:
    org = _org_for(session, actor, org_name, "admin")
    team = _team_for(session, org, team_slug)
    try:
        member = _user_named(username, "TeamMember", session)
        accounts.add_team_member(session, team, member, role)
    except ValidationFailed as exc:
        context = _invalid(session, exc)
        return _team_page(
            request,
            session,
            actor,
            org,
            team,
            form={"username": username[:60], "role": role},
            **context,
        )
    return flash.redirect(
        request,
        f"/orgs/{org.username}/teams/{team.slug}",
        f"{member.username} was added to {team.name}.",
    )


@router.post("/orgs/{org_name}/teams/{team_slug}/members/{username}/remove")
def org_team_member_remove(
    request: Request,
    org_name: str,
    team_slug: str,
    username: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    org = _org_for(session, actor, org_name, "admin")
    team = _team_for(session, org, team_slug)
    member = accounts.get_user(session, username) if _lookup_safe(username) else None
    if member is None:
        raise NotFound()
    accounts.remove_team_member(session, team, member)
    return flash.redirect(
        request,
        f"/orgs/{org.username}/teams/{team.slug}",
        f"{member.username} was removed from {team.name}.",
    )


# Sudo mode's pages are single-segment paths, so they must come before the profile route.
router.include_router(sudo.router)


# Profiles --------------------------------------------------------------------------------------
#
# `/{owner}` must stay the last single-segment route of the app: it is registered with a
# convertor that matches only names an account can have (USERNAME_RE) and never a reserved one
# (`/explore`, `/new`, `/login`, …), so even a route registered after it is not shadowed by it.


_RESERVED_ALTERNATIVES = "|".join(
    re.escape(name) for name in sorted(RESERVED_USERNAMES, key=len, reverse=True)
)
_ACCOUNT_NAME_BODY = USERNAME_RE.pattern.removeprefix("\\A").removesuffix("\\Z")


class AccountNameConvertor(Convertor[str]):
    """A path segment that can name a user or organization: USERNAME_RE, not reserved."""

    # Reserved names are refused in any case (`/Explore` is no profile either).
    regex = f"(?!(?i:{_RESERVED_ALTERNATIVES})$){_ACCOUNT_NAME_BODY}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("account_name", AccountNameConvertor())

PROFILE_REPOSITORIES_PER_PAGE = 30
_HAS_SCHEME = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*:")


@router.get("/{owner:account_name}")
def profile(
    request: Request, owner: str, actor: CurrentActor, session: SessionDep, page: str = "1"
) -> Response:
    """A user's or an organization's public page, with the repositories the viewer may read."""
    account = accounts.get_account(session, owner)
    if account is None:
        raise NotFound()
    authorize(session, actor, account, "read")
    number = parse_page(page)
    repositories, total = repos.list_for_owner(
        session, actor, account, Page(number, PROFILE_REPOSITORIES_PER_PAGE), sort="updated"
    )
    last_page = max(1, -(-total // PROFILE_REPOSITORIES_PER_PAGE))
    base = f"/{account.username}"
    context: dict[str, Any] = {}
    if account.kind == AccountKind.ORGANIZATION:
        context["member_count"] = len(accounts.list_org_members(session, account))
        context["is_member"] = can(session, actor, account, "member")
    else:
        context["organizations"] = accounts.list_user_orgs(session, account)
    return render(
        request,
        "profiles/profile.html",
        page_title=account.full_name or account.username,
        account=account,
        repositories=repositories,
        total=total,
        page_number=number,
        last_page=last_page,
        previous_url=f"{base}?page={number - 1}" if number > 1 else None,
        next_url=f"{base}?page={number + 1}" if number < min(last_page, MAX_PAGE) else None,
        website_url=_website_url(account.website),
        **context,
    )


def _website_url(website: str) -> str | None:
    """The profile's website as a link target: http(s) only, so no `javascript:` (or any other
    scheme) survives, whatever the column holds."""
    if not website or any(ord(char) < 0x21 for char in website):
        return None
    target = website if _HAS_SCHEME.match(website) else f"http://{website}"
    parts = urlsplit(target)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return target
