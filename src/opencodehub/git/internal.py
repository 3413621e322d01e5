"""The internal channel the server-side git hooks call (authenticated, never public).

`POST /internal/git/hooks/pre-receive` and `/post-receive`, sent by `git/hooks/hook.py` with the
HMAC token the transport minted for this push (`git.hooks.issue_hook_token`). Without a valid,
unexpired token nothing is read, decided or written. Answers are JSON `{"ok": bool, "message":
str}`; the hook prints the message (git shows it as `remote: ...`) and rejects the push unless
`ok` is true.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden
from opencodehub.core.events import EventBus
from opencodehub.core.logging import get_logger
from opencodehub.core.routing import APIRouter
from opencodehub.db.engine import Database
from opencodehub.git.hooks import HookGrant, verify_hook_token
from opencodehub.repos import pushes
from opencodehub.repos.models import Repository

router = APIRouter(include_in_schema=False)
log = get_logger("opencodehub.git.hooks")

# A push of every tag of a large project is tens of thousands of refs; 64 MiB holds ~300k lines.
MAX_BODY_BYTES = 64 * 1024 * 1024
# git check-ref-format's rules, so a forged request cannot name what git would never write.
_REF_RE = re.compile(
    r"\Arefs/(?!.*\.\.)(?!.*@\{)(?!.*//)(?!.*/\.)[^\x00-\x20\x7f~^:?*\[\\]{1,1019}(?<![./])\Z"
)

Sha = Annotated[str, StringConstraints(pattern=r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")]


class HookRefUpdate(BaseModel):
    ref: Annotated[str, StringConstraints(min_length=6, max_length=1024)]
    old_sha: Sha
    new_sha: Sha


class HookRequest(BaseModel):
    updates: list[HookRefUpdate] = Field(max_length=500_000)
    push_options: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=100
    )
    quarantine_path: Annotated[str, StringConstraints(max_length=4096)] = ""
    transport: Annotated[str, StringConstraints(max_length=16)] = ""


def _answer(ok: bool, message: str = "", status_code: int = 200) -> JSONResponse:
    return JSONResponse({"ok": ok, "message": message}, status_code=status_code)


def _grant_from(request: Request, settings: Settings) -> HookGrant | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        return verify_hook_token(settings, token.strip())
    except ValueError:
        return None


async def _read_request(request: Request) -> HookRequest | JSONResponse:
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY_BYTES:
            return _answer(False, "the hook request is too large", 413)
    try:
        body = HookRequest.model_validate_json(bytes(received))
    except ValidationError:
        return _answer(False, "the hook request could not be read", 400)
    if any(not _REF_RE.match(update.ref) for update in body.updates):
        return _answer(False, "the hook request names an invalid ref", 400)
    return body


def _updates(body: HookRequest) -> list[pushes.RefUpdate]:
    return [pushes.RefUpdate(u.ref, u.old_sha, u.new_sha) for u in body.updates]


def _pre_receive(
    database: Database, settings: Settings, grant: HookGrant, body: HookRequest
) -> JSONResponse:
    with database.session() as session:
        repository = session.get(Repository, grant.repository_id)
        if repository is None:
            return _answer(False, "the repository no longer exists", 404)
        pusher = session.get(User, grant.pusher_id) if grant.pusher_id else None
        try:
            git_repo = pushes.open_pushed_objects(
                settings, repository.id, body.quarantine_path or None
            )
        except ValueError as exc:
            return _answer(False, str(exc), 400)
        try:
            pushes.check_push(session, repository, pusher, _updates(body), git_repo=git_repo)
        except Forbidden as exc:
            return _answer(False, exc.message, 403)
        finally:
            # Freed now rather than by a later cyclic collection: it reads the quarantined
            # pack, which receive-pack moves or deletes as soon as this hook answers.
            git_repo.free()
    return _answer(True)


def _post_receive(
    database: Database,
    settings: Settings,
    events: EventBus,
    grant: HookGrant,
    body: HookRequest,
) -> tuple[JSONResponse, pushes.IndexContinuation | None]:
    with database.session() as session:
        repository = session.get(Repository, grant.repository_id)
        if repository is None:
            return _answer(False, "the repository no longer exists", 404), None
        pusher = session.get(User, grant.pusher_id) if grant.pusher_id else None
        result = pushes.record_push(
            session, settings, repository, pusher, _updates(body), events=events
        )
    return _answer(True), result.pending_index


@router.post("/internal/git/hooks/{hook}")
async def git_hook(
    hook: Literal["pre-receive", "post-receive"], request: Request, background: BackgroundTasks
) -> JSONResponse:
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.db
    grant = _grant_from(request, settings)
    if grant is None:
        return _answer(False, "invalid or expired hook token", 401)
    body = await _read_request(request)
    if isinstance(body, JSONResponse):
        return body
    if hook == "pre-receive":
        return await run_in_threadpool(_pre_receive, database, settings, grant, body)
    answer, pending = await run_in_threadpool(
        _post_receive, database, settings, request.app.state.events, grant, body
    )
    if pending is not None:
        # The rest of a huge import is indexed after the hook has its answer.
        background.add_task(pushes.continue_commit_index, database, settings, pending)
    return answer
