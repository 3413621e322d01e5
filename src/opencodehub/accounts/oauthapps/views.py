"""The OAuth 2 provider's endpoints (`/login/oauth/authorize`, `/login/oauth/access_token`,
`/login/oauth/revoke`) and the pages that manage apps and authorizations.

Protocol failures are answered, never raised: the request's unit of work then commits, so a
burned code stays burned and a replay's revocation sticks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.accounts.oauthapps import service as oauth
from opencodehub.accounts.oauthapps.api import basic_credentials, client_router
from opencodehub.accounts.oauthapps.models import OAuthApp
from opencodehub.accounts.security.sudo import RequireSudo
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep
from opencodehub.web import flash
from opencodehub.web.auth import WebUser, login_redirect
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.security import CONTENT_SECURITY_POLICY
from opencodehub.web.templating import field_errors, render

router = APIRouter(include_in_schema=False)
router.include_router(client_router)

FormStr = Annotated[str, Form()]
MAX_BODY = 64 * 1024
_ORIGIN_RE = re.compile(r"\A[A-Za-z0-9.\-]+(:[0-9]{1,5})?\Z|\A\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\Z")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# Authorization endpoint ------------------------------------------------------------------------


def _error_page(request: Request, message: str, status: int = 400) -> Response:
    return render(
        request,
        "oauthapps/error.html",
        page_title="Authorization failed",
        message=message,
        status_code=status,
    )


def redirect_with(uri: str, params: dict[str, str]) -> RedirectResponse:
    """`uri` (a registered callback) with `params` added to any query it already has."""
    parts = urlsplit(uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


def _answer(uri: str, state: str, params: dict[str, str]) -> RedirectResponse:
    return redirect_with(uri, {**params, **({"state": state} if state else {})})


def _consent_page(
    request: Request, areq: oauth.AuthorizationRequest, code_challenge_method: str
) -> Response:
    return render(
        request,
        "oauthapps/authorize.html",
        page_title=f"Authorize {areq.app.name}",
        app=areq.app,
        scopes=oauth.describe_scopes(areq.scopes),
        areq=areq,
        scope_param=" ".join(areq.scopes),
        code_challenge_method=code_challenge_method,
        redirect_host=urlsplit(areq.redirect_uri).netloc,
        headers={"Content-Security-Policy": consent_csp(areq.redirect_uri)},
    )


def consent_csp(redirect_uri: str) -> str:
    """The site's policy, with the app's callback origin added to `form-action`: browsers check
    that directive on the redirect that follows the consent form, too."""
    parts = urlsplit(redirect_uri)
    host_port = parts.netloc.rpartition("@")[2]
    if not _ORIGIN_RE.match(host_port) or parts.scheme not in ("http", "https"):
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action 'self' {parts.scheme}://{host_port}"
    )


def _authorization(
    request: Request,
    session: Session,
    user: User,
    params: dict[str, str],
    *,
    decision: str | None,
) -> Response:
    try:
        app, uri = oauth.check_client_and_redirect(
            session, params["client_id"], params["redirect_uri"]
        )
    except oauth.AuthorizeRefused as exc:
        return _error_page(request, exc.message)
    state = params["state"]
    try:
        areq = oauth.validate_authorization(
            app,
            uri,
            user=user,
            response_type=params["response_type"],
            scope=params["scope"],
            state=state,
            code_challenge=params["code_challenge"],
            code_challenge_method=params["code_challenge_method"],
        )
    except oauth.OAuthError as exc:
        return _answer(uri, state, {"error": exc.error, "error_description": exc.description})
    if decision is None and oauth.needs_consent(session, user, areq):
        return _consent_page(request, areq, params["code_challenge_method"])
    if decision is not None and decision != "approve":
        return _answer(
            uri,
            state,
            {
                "error": "access_denied",
                "error_description": "The user has denied your application access.",
            },
        )
    code = oauth.approve(session, request, user, areq)
    return _answer(uri, state, {"code": code})


_PARAMS = (
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "response_type",
    "code_challenge",
    "code_challenge_method",
)


@router.get("/login/oauth/authorize")
def authorize_page(request: Request, actor: CurrentActor, session: SessionDep) -> Response:
    params = {name: request.query_params.get(name, "")[:4096] for name in _PARAMS}
    try:
        oauth.check_client_and_redirect(session, params["client_id"], params["redirect_uri"])
    except oauth.AuthorizeRefused as exc:
        return _error_page(request, exc.message)
    if actor.user is None or actor.method != "session":
        return login_redirect(f"{request.url.path}?{request.url.query}")
    return _authorization(request, session, actor.user, params, decision=None)


@router.post("/login/oauth/authorize")
def authorize_decision(
    request: Request,
    _: CsrfProtected,
    user: WebUser,
    session: SessionDep,
    client_id: FormStr = "",
    redirect_uri: FormStr = "",
    scope: FormStr = "",
    state: FormStr = "",
    response_type: FormStr = "",
    code_challenge: FormStr = "",
    code_challenge_method: FormStr = "",
    authorize: FormStr = "",
) -> Response:
    values = (
        client_id,
        redirect_uri,
        scope,
        state,
        response_type,
        code_challenge,
        code_challenge_method,
    )
    params = {name: value[:4096] for name, value in zip(_PARAMS, values, strict=True)}
    decision = "approve" if authorize == "1" else "deny"
    return _authorization(request, session, user, params, decision=decision)


async def _run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(func, *args, **kwargs)


# Token and revocation endpoints ----------------------------------------------------------------


async def _read_params(request: Request) -> dict[str, str]:
    """The body as form fields or JSON (GitHub takes both); the query string is not read."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise oauth.OAuthError("invalid_request", "The request body is too large.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise oauth.OAuthError("invalid_request", "The JSON body could not be read.") from None
        if not isinstance(data, dict):
            raise oauth.OAuthError("invalid_request", "The JSON body must be an object.")
        return {str(key): value for key, value in data.items() if isinstance(value, str)}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise oauth.OAuthError("invalid_request", "The body is not UTF-8.") from None
    return dict(pairs)


def _client_credentials(request: Request, params: dict[str, str]) -> tuple[str, str]:
    basic = basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        if params.get("client_id") and params["client_id"] != basic[0]:
            raise oauth.OAuthError("invalid_request", "Two different client_id values were sent.")
        return basic
    return params.get("client_id", ""), params.get("client_secret", "")


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "").lower()


def _reply(request: Request, body: dict[str, Any], status: int = 200) -> Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="OpenCodeHub"'
    if _wants_json(request):
        return JSONResponse(body, status_code=status, headers=headers)
    return Response(
        urlencode({key: str(value) for key, value in body.items()}),
        status_code=status,
        media_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def _token_grant(session: Session, request: Request, params: dict[str, str]) -> dict[str, Any]:
    client_id, client_secret = _client_credentials(request, params)
    grant_type = params.get("grant_type") or "authorization_code"  # GitHub's default
    if grant_type == "authorization_code":
        return oauth.exchange_code(
            session,
            client_id=client_id,
            client_secret=client_secret,
            code=params.get("code", ""),
            redirect_uri=params.get("redirect_uri", ""),
            code_verifier=params.get("code_verifier", ""),
        )
    if grant_type == "refresh_token":
        return oauth.refresh(
            session,
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=params.get("refresh_token", ""),
            scope=params.get("scope", ""),
        )
    raise oauth.OAuthError("unsupported_grant_type", "The grant_type is not supported.")


@router.post("/login/oauth/access_token")
async def access_token(request: Request, session: SessionDep) -> Response:
    try:
        params = await _read_params(request)
        body = await _run_sync(_token_grant, session, request, params)
    except oauth.OAuthError as exc:
        return _reply(request, exc.as_dict(), exc.status_code)
    return _reply(request, body)


def _revoke(session: Session, request: Request, params: dict[str, str]) -> None:
    client_id, client_secret = _client_credentials(request, params)
    app = oauth.authenticate_client(session, client_id, client_secret)
    oauth.revoke_token(session, request, app, params.get("token", ""))


@router.post("/login/oauth/revoke")
async def revoke(request: Request, session: SessionDep) -> Response:
    """RFC 7009: 200 whether or not the token was known, once the client is authenticated."""
    try:
        params = await _read_params(request)
        if not params.get("token"):
            raise oauth.OAuthError("invalid_request", "The token parameter is required.")
        await _run_sync(_revoke, session, request, params)
    except oauth.OAuthError as exc:
        return _reply(request, exc.as_dict(), exc.status_code)
    return Response(status_code=200, headers=_NO_STORE)


# Managing apps: one set of pages for a user's apps and for an organization's ----------------


@dataclass(frozen=True)
class Managed:
    owner: User
    base: str
    layout: str


def managed_owner(
    request: Request, user: WebUser, actor: CurrentActor, session: SessionDep
) -> Managed:
    org_name = request.path_params.get("org_name")
    if org_name is None:
        return Managed(user, "/settings/applications", "oauthapps/_user.html")
    org = accounts.get_organization(session, org_name) if len(org_name) <= 254 else None
    if org is None:
        raise NotFound()
    oauth.require_manager(session, actor, org)
    return Managed(
        org, f"/organizations/{org.username}/settings/applications", "oauthapps/_org.html"
    )


ManagedDep = Annotated[Managed, Depends(managed_owner)]
USER_BASE = "/settings/applications"
ORG_BASE = "/organizations/{org_name}/settings/applications"


def _page(
    request: Request, managed: Managed, template: str, title: str, **context: Any
) -> Response:
    status = context.pop("status", 200)
    owner = managed.owner
    return render(
        request,
        f"oauthapps/{template}",
        page_title=title,
        layout=managed.layout,
        base=managed.base,
        owner=owner,
        active="applications",
        org=owner if owner.is_organization else None,
        org_tab="applications",
        is_owner=True,
        errors=context.pop("errors", {}),
        error=context.pop("error", ""),
        status_code=status,
        **context,
    )


def _invalid(session: Session, exc: ValidationFailed) -> dict[str, Any]:
    session.rollback()
    return {"errors": field_errors(exc), "error": exc.describe(), "status": 422}


def _list_page(request: Request, session: Session, managed: Managed, **context: Any) -> Response:
    authorizations = (
        oauth.list_authorizations(session, managed.owner)
        if not managed.owner.is_organization
        else []
    )
    return _page(
        request,
        managed,
        "list.html",
        "OAuth apps",
        apps=oauth.list_apps(session, managed.owner),
        authorizations=authorizations,
        **context,
    )


@router.get(USER_BASE)
@router.get(ORG_BASE)
def apps_list(request: Request, managed: ManagedDep, session: SessionDep) -> Response:
    return _list_page(request, session, managed)


def _form_of(app: OAuthApp | None) -> dict[str, Any]:
    if app is None:
        return {"callback_urls": "", "public_client": False}
    return {
        "name": app.name,
        "homepage_url": app.homepage_url,
        "description": app.description,
        "callback_urls": app.callback_urls,
        "public_client": app.public_client,
    }


@router.get(USER_BASE + "/new")
@router.get(ORG_BASE + "/new")
def app_new_form(request: Request, managed: ManagedDep) -> Response:
    return _page(request, managed, "new.html", "Register a new OAuth app", form=_form_of(None))


@router.post(USER_BASE + "/new")
@router.post(ORG_BASE + "/new")
def app_create(
    request: Request,
    _: CsrfProtected,
    managed: ManagedDep,
    user: WebUser,
    session: SessionDep,
    name: FormStr = "",
    homepage_url: FormStr = "",
    description: FormStr = "",
    callback_urls: FormStr = "",
    public_client: FormStr = "",
) -> Response:
    form = {
        "name": name[:200],
        "homepage_url": homepage_url[:2048],
        "description": description[:1000],
        "callback_urls": callback_urls[:20000],
        "public_client": public_client == "1",
    }
    try:
        app = oauth.create_app(
            session,
            request,
            user,
            managed.owner,
            name=name,
            homepage_url=homepage_url,
            description=description,
            callback_urls=callback_urls,
            public_client=public_client == "1",
        )
    except ValidationFailed as exc:
        return _page(
            request,
            managed,
            "new.html",
            "Register a new OAuth app",
            form=form,
            **_invalid(session, exc),
        )
    return flash.redirect(
        request, f"{managed.base}/{app.id}", f"The app “{app.name}” was registered."
    )


def _edit_page(
    request: Request, session: Session, managed: Managed, app: OAuthApp, **context: Any
) -> Response:
    return _page(
        request,
        managed,
        "edit.html",
        app.name,
        app=app,
        secrets=oauth.list_secrets(session, app),
        form=context.pop("form", None) or _form_of(app),
        **context,
    )


@router.get(USER_BASE + "/{app_id}")
@router.get(ORG_BASE + "/{app_id}")
def app_edit_form(
    request: Request, app_id: int, managed: ManagedDep, session: SessionDep
) -> Response:
    app = oauth.get_app(session, managed.owner, app_id)
    return _edit_page(request, session, managed, app)


@router.post(USER_BASE + "/{app_id}")
@router.post(ORG_BASE + "/{app_id}")
def app_update(
    request: Request,
    _: CsrfProtected,
    app_id: int,
    managed: ManagedDep,
    session: SessionDep,
    name: FormStr = "",
    homepage_url: FormStr = "",
    description: FormStr = "",
    callback_urls: FormStr = "",
    public_client: FormStr = "",
) -> Response:
    app = oauth.get_app(session, managed.owner, app_id)
    form = {
        "name": name[:200],
        "homepage_url": homepage_url[:2048],
        "description": description[:1000],
        "callback_urls": callback_urls[:20000],
        "public_client": public_client == "1",
    }
    try:
        oauth.update_app(
            session,
            app,
            name=name,
            homepage_url=homepage_url,
            description=description,
            callback_urls=callback_urls,
            public_client=public_client == "1",
        )
    except ValidationFailed as exc:
        invalid = _invalid(session, exc)
        app = oauth.get_app(session, managed.owner, app_id)
        return _edit_page(request, session, managed, app, form=form, **invalid)
    return flash.redirect(request, f"{managed.base}/{app.id}", "The app was updated.")


@router.post(USER_BASE + "/{app_id}/delete")
@router.post(ORG_BASE + "/{app_id}/delete")
def app_delete(
    request: Request,
    _: CsrfProtected,
    app_id: int,
    managed: ManagedDep,
    user: RequireSudo,
    session: SessionDep,
) -> Response:
    app = oauth.get_app(session, managed.owner, app_id)
    name = app.name
    oauth.delete_app(session, request, user, app)
    return flash.redirect(request, managed.base, f"The app “{name}” was deleted.")


@router.post(USER_BASE + "/{app_id}/secrets")
@router.post(ORG_BASE + "/{app_id}/secrets")
def secret_create(
    request: Request,
    _: CsrfProtected,
    app_id: int,
    managed: ManagedDep,
    user: RequireSudo,
    session: SessionDep,
) -> Response:
    app = oauth.get_app(session, managed.owner, app_id)
    try:
        record, plaintext = oauth.create_secret(session, request, user, app)
    except ValidationFailed as exc:
        invalid = _invalid(session, exc)
        app = oauth.get_app(session, managed.owner, app_id)
        return _edit_page(request, session, managed, app, **invalid)
    # Shown in this response only: the secret is stored as a digest.
    return _edit_page(
        request, session, managed, app, new_secret=plaintext, new_secret_id=record.id, status=201
    )


@router.post(USER_BASE + "/{app_id}/secrets/{secret_id}/delete")
@router.post(ORG_BASE + "/{app_id}/secrets/{secret_id}/delete")
def secret_delete(
    request: Request,
    _: CsrfProtected,
    app_id: int,
    secret_id: int,
    managed: ManagedDep,
    session: SessionDep,
) -> Response:
    app = oauth.get_app(session, managed.owner, app_id)
    oauth.delete_secret(session, app, secret_id)
    return flash.redirect(request, f"{managed.base}/{app.id}", "The client secret was deleted.")


# The apps a person has authorized --------------------------------------------------------------


@router.post("/settings/connections/applications/{app_id}/revoke")
def authorization_revoke(
    request: Request, _: CsrfProtected, app_id: int, user: WebUser, session: SessionDep
) -> Response:
    app = oauth.revoke_authorization(session, request, user, app_id)
    return flash.redirect(request, USER_BASE, f"“{app.name}” no longer has access to your account.")
