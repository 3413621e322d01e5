"""Avatar routes: `GET /avatars/u/{id}` (the image, `?s=` for a size), and the upload and
remove forms for one's own account (`/settings/avatar`) and for organizations one owns
(`/orgs/{org}/settings/avatar`).

Upload routes cap the request body from its Content-Length before anything is parsed, parse the
form, check the CSRF token, then hand the file to `avatars.service`; a refused image changes
nothing and comes back as a message on the settings page.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.accounts.names import USERNAME_RE
from opencodehub.avatars import service as avatars
from opencodehub.core.errors import BadRequest, NotFound, OCHError, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.repos.authz import authorize
from opencodehub.storage.base import StorageAdapter
from opencodehub.storage.views import StorageDep
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected

router = APIRouter(include_in_schema=False)

CACHE_SECONDS = 300
# The multipart envelope around the file: boundaries, headers, the CSRF field.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_REQUEST_BYTES = avatars.MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES
UPLOAD_FIELD = "avatar"

_ID_RE = re.compile(r"\A[1-9][0-9]{0,17}\Z")  # fits a signed 64-bit id on every engine
_SIZE_RE = re.compile(r"\A[0-9]{1,4}\Z")


class LengthRequired(OCHError):
    status_code = 411
    default_message = "Uploads must declare their length."


class PayloadTooLarge(OCHError):
    status_code = 413
    default_message = (
        f"The image is larger than {avatars.MAX_UPLOAD_BYTES // (1024 * 1024)} MB; "
        "upload a smaller one."
    )


async def limit_upload_body(request: Request) -> None:
    """Refuse a body over the cap from its declared length, before a byte of it is read.

    The server delivers no more than Content-Length bytes, so the form parser sees at most that.
    """
    length = request.headers.get("content-length", "")
    if not length.isdigit() or len(length) > 12:
        raise LengthRequired()
    if int(length) > MAX_REQUEST_BYTES:
        raise PayloadTooLarge()


async def uploaded_file(request: Request) -> UploadFile | None:
    form = await request.form(max_files=1, max_fields=8)
    value = form.get(UPLOAD_FIELD)
    return value if isinstance(value, UploadFile) else None


BodyLimited = Annotated[None, Depends(limit_upload_body)]
Upload = Annotated[UploadFile | None, Depends(uploaded_file)]


# Serving -----------------------------------------------------------------------------------------


def _parse_size(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not _SIZE_RE.match(value) or int(value) < 1:
        raise BadRequest("s must be a whole number of pixels from 1 to 460.")
    return avatars.snap_size(int(value))


def _matches(if_none_match: str, etag: str) -> bool:
    candidates = [part.strip().removeprefix("W/") for part in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


@router.api_route("/avatars/u/{account_id}", methods=["GET", "HEAD"])
def show_avatar(
    request: Request,
    account_id: str,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    storage: StorageDep,
    s: str | None = None,
) -> Response:
    if not _ID_RE.match(account_id):
        raise NotFound()
    account = session.get(User, int(account_id))
    if account is None:
        raise NotFound()
    authorize(session, actor, account, "read")
    size = _parse_size(s) or avatars.DEFAULT_SIZE
    image = avatars.render_avatar(storage, account, size, settings.avatar_gravatar)
    etag = f'"{image.etag}"'
    # Only active accounts are public; a site admin looking at a suspended one must not fill
    # shared caches with it.
    visibility = "public" if account.is_active else "private"
    headers = {
        "ETag": etag,
        "Cache-Control": f"{visibility}, max-age={CACHE_SECONDS}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": f'inline; filename="avatar-{account.id}.png"',
    }
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(image.body))
        return Response(status_code=200, headers=headers, media_type=image.content_type)
    return Response(image.body, headers=headers, media_type=image.content_type)


# Changing ----------------------------------------------------------------------------------------


def _store(
    request: Request,
    session: Session,
    storage: StorageAdapter,
    account: User,
    upload: UploadFile | None,
    back: str,
) -> Response:
    if upload is None:
        return flash.redirect(request, back, "Choose an image to upload.", "error")
    try:
        avatars.set_avatar(session, storage, account, upload.file)
    except ValidationFailed as exc:
        session.rollback()
        reason = exc.errors[0].message if exc.errors and exc.errors[0].message else exc.message
        return flash.redirect(request, back, f"The avatar was not changed: {reason}.", "error")
    finally:
        upload.file.close()
    return flash.redirect(request, back, "The avatar was updated.")


def _remove(
    request: Request, session: Session, storage: StorageAdapter, account: User, back: str
) -> Response:
    if avatars.remove_avatar(session, storage, account):
        return flash.redirect(request, back, "The avatar was removed.")
    return flash.redirect(request, back, "There was no uploaded avatar to remove.", "info")


def _owned_org(session: Session, actor: Actor, name: str) -> User:
    """The organization when the actor owns it: NotFound for outsiders, Forbidden for members."""
    org = accounts.get_organization(session, name) if USERNAME_RE.match(name) else None
    if org is None:
        raise NotFound()
    authorize(session, actor, org, "member")
    authorize(session, actor, org, "admin")
    return org


@router.post("/settings/avatar")
def upload_own_avatar(
    request: Request,
    _limit: BodyLimited,
    upload: Upload,
    _: CsrfProtected,
    user: WebUser,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    return _store(request, session, storage, user, upload, "/settings/profile")


@router.post("/settings/avatar/delete")
def remove_own_avatar(
    request: Request, _: CsrfProtected, user: WebUser, session: SessionDep, storage: StorageDep
) -> Response:
    return _remove(request, session, storage, user, "/settings/profile")


@router.post("/orgs/{org_name}/settings/avatar")
def upload_org_avatar(
    request: Request,
    org_name: str,
    _limit: BodyLimited,
    upload: Upload,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    org = _owned_org(session, actor, org_name)
    return _store(request, session, storage, org, upload, f"/orgs/{org.username}/people")


@router.post("/orgs/{org_name}/settings/avatar/delete")
def remove_org_avatar(
    request: Request,
    org_name: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    org = _owned_org(session, actor, org_name)
    return _remove(request, session, storage, org, f"/orgs/{org.username}/people")
