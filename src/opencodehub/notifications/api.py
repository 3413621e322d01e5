"""REST API for notifications and repository subscriptions, in GitHub's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound, Unauthorized
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import isoformat
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.issues.models import Issue
from opencodehub.notifications import service
from opencodehub.notifications.models import NotificationThread, RepositoryWatch, WatchLevel
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository
from opencodehub.repos.schemas import repository_json, urls_for

router = APIRouter(tags=["activity"])

PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]


class MarkRead(BaseModel):
    model_config = ConfigDict(extra="ignore")

    last_read_at: datetime | None = None
    read: bool = True


class SubscriptionPut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subscribed: bool | None = None
    ignored: bool | None = None


def _user(actor: Actor) -> User:
    """The caller's own inbox; a token needs the `notifications` or `repo` scope."""
    if actor.user is None:
        raise Unauthorized()
    if actor.scopes is not None and not (
        actor.has_scope("notifications") or actor.has_scope("repo")
    ):
        raise Forbidden("The token lacks the notifications scope.")
    return actor.user


def thread_json(session: Session, settings: Settings, thread: NotificationThread) -> dict[str, Any]:
    urls = urls_for(settings)
    repository = session.get(Repository, thread.repository_id)
    issue = session.get(Issue, thread.issue_id)
    assert repository is not None and issue is not None
    repo_url = f"{urls.api}/repos/{repository.full_name}"
    kind = "pulls" if issue.is_pull_request else "issues"
    subject_url = f"{repo_url}/{kind}/{issue.number}"
    latest = (
        f"{repo_url}/issues/comments/{thread.latest_comment_id}"
        if thread.latest_comment_id
        else subject_url
    )
    url = f"{urls.api}/notifications/threads/{thread.id}"
    return {
        "id": str(thread.id),
        "repository": repository_json(repository, settings, None),
        "subject": {
            "title": issue.title,
            "url": subject_url,
            "latest_comment_url": latest,
            "type": "PullRequest" if issue.is_pull_request else "Issue",
        },
        "reason": thread.reason,
        "unread": thread.unread,
        "updated_at": isoformat(thread.last_updated_at),
        "last_read_at": isoformat(thread.last_read_at),
        "url": url,
        "subscription_url": f"{url}/subscription",
    }


def _list(
    request: Request,
    response: Response,
    session: Session,
    settings: Settings,
    user: User,
    filters: service.InboxFilter,
    page: int | None,
    per_page: int | None,
) -> list[dict[str, Any]]:
    chosen = Page.of(page, per_page)
    rows = service.list_threads(session, user, filters, chosen)
    has_next = len(rows) > chosen.limit
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        f"{settings.effective_base_url}{request.url.path}", params, chosen, None, has_next
    )
    if header:
        response.headers["Link"] = header
    return [thread_json(session, settings, row) for row in rows[: chosen.limit]]


@router.get("/notifications")
def list_notifications(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    all: bool = False,
    participating: bool = False,
    since: datetime | None = None,
    before: datetime | None = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    user = _user(actor)
    filters = service.InboxFilter(all=all, participating=participating, since=since, before=before)
    return _list(request, response, session, settings, user, filters, page, per_page)


@router.put("/notifications", status_code=205)
def mark_notifications_read(
    session: SessionDep, actor: CurrentActor, body: MarkRead | None = None
) -> Response:
    user = _user(actor)
    if body is None or body.read:
        service.mark_all_read(session, user, last_read_at=body.last_read_at if body else None)
    return Response(status_code=205)


@router.get("/notifications/threads/{thread_id}")
def get_thread(
    thread_id: int, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Any:
    thread = service.get_thread(session, _user(actor), thread_id)
    return thread_json(session, settings, thread)


@router.patch("/notifications/threads/{thread_id}", status_code=205)
def mark_thread_read(thread_id: int, session: SessionDep, actor: CurrentActor) -> Response:
    service.mark_thread_read(session, service.get_thread(session, _user(actor), thread_id))
    return Response(status_code=205)


@router.delete("/notifications/threads/{thread_id}", status_code=204)
def mark_thread_done(thread_id: int, session: SessionDep, actor: CurrentActor) -> Response:
    service.mark_thread_done(session, service.get_thread(session, _user(actor), thread_id))
    return Response(status_code=204)


def _thread_subscription_json(
    settings: Settings, thread: NotificationThread, subscribed: bool, ignored: bool, created: Any
) -> dict[str, Any]:
    url = f"{urls_for(settings).api}/notifications/threads/{thread.id}"
    return {
        "subscribed": subscribed,
        "ignored": ignored,
        "reason": None,
        "created_at": isoformat(created),
        "url": f"{url}/subscription",
        "thread_url": url,
    }


@router.get("/notifications/threads/{thread_id}/subscription")
def get_thread_subscription(
    thread_id: int, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Any:
    user = _user(actor)
    thread = service.get_thread(session, user, thread_id)
    issue = session.get(Issue, thread.issue_id)
    assert issue is not None
    row = service.thread_subscription(session, user, issue)
    if row is None:
        subscribed = service.is_subscribed(session, user, issue)
        return _thread_subscription_json(settings, thread, subscribed, False, thread.created_at)
    return _thread_subscription_json(settings, thread, row.subscribed, row.ignored, row.created_at)


@router.put("/notifications/threads/{thread_id}/subscription")
def set_thread_subscription(
    thread_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    body: SubscriptionPut | None = None,
) -> Any:
    user = _user(actor)
    thread = service.get_thread(session, user, thread_id)
    issue = session.get(Issue, thread.issue_id)
    assert issue is not None
    ignored = bool(body and body.ignored)
    row = service.set_thread_subscription(
        session, user, issue, subscribed=not ignored, ignored=ignored
    )
    return _thread_subscription_json(settings, thread, row.subscribed, row.ignored, row.created_at)


@router.delete("/notifications/threads/{thread_id}/subscription", status_code=204)
def delete_thread_subscription(
    thread_id: int, session: SessionDep, actor: CurrentActor
) -> Response:
    user = _user(actor)
    thread = service.get_thread(session, user, thread_id)
    issue = session.get(Issue, thread.issue_id)
    assert issue is not None
    service.set_thread_subscription(session, user, issue, subscribed=False)
    return Response(status_code=204)


# Per repository --------------------------------------------------------------------------------


@router.get("/repos/{owner}/{repo}/notifications")
def list_repository_notifications(
    owner: str,
    repo: str,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    all: bool = False,
    participating: bool = False,
    since: datetime | None = None,
    before: datetime | None = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    user = _user(actor)
    repository = repos.get_for(session, actor, owner, repo)
    filters = service.InboxFilter(
        all=all,
        participating=participating,
        since=since,
        before=before,
        repository_id=repository.id,
    )
    return _list(request, response, session, settings, user, filters, page, per_page)


@router.put("/repos/{owner}/{repo}/notifications", status_code=205)
def mark_repository_notifications_read(
    owner: str,
    repo: str,
    session: SessionDep,
    actor: CurrentActor,
    body: MarkRead | None = None,
) -> Response:
    user = _user(actor)
    repository = repos.get_for(session, actor, owner, repo)
    service.mark_all_read(
        session,
        user,
        last_read_at=body.last_read_at if body else None,
        repository_id=repository.id,
    )
    return Response(status_code=205)


def _subscription_json(
    settings: Settings, repository: Repository, row: RepositoryWatch
) -> dict[str, Any]:
    repo_url = f"{urls_for(settings).api}/repos/{repository.full_name}"
    return {
        "subscribed": row.level == WatchLevel.WATCHING.value,
        "ignored": row.level == WatchLevel.IGNORING.value,
        "reason": None,
        "created_at": isoformat(row.created_at),
        "url": f"{repo_url}/subscription",
        "repository_url": repo_url,
    }


def _watcher(actor: Actor) -> User:
    if actor.user is None:
        raise Unauthorized()
    return actor.user


@router.get("/repos/{owner}/{repo}/subscription")
def get_repository_subscription(
    owner: str, repo: str, session: SessionDep, settings: SettingsDep, actor: CurrentActor
) -> Any:
    user = _watcher(actor)
    repository = repos.get_for(session, actor, owner, repo)
    row = service.get_watch(session, user, repository)
    if row is None or row.level == WatchLevel.NOT_WATCHING.value:
        raise NotFound()
    return _subscription_json(settings, repository, row)


@router.put("/repos/{owner}/{repo}/subscription")
def set_repository_subscription(
    owner: str,
    repo: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    body: SubscriptionPut | None = None,
) -> Any:
    user = _watcher(actor)
    repository = repos.get_for(session, actor, owner, repo)
    if body is not None and body.ignored:
        level = WatchLevel.IGNORING.value
    elif body is not None and body.subscribed is False:
        level = WatchLevel.NOT_WATCHING.value
    else:
        level = WatchLevel.WATCHING.value
    row = service.set_watch(session, user, repository, level)
    return _subscription_json(settings, repository, row)


@router.delete("/repos/{owner}/{repo}/subscription", status_code=204)
def delete_repository_subscription(
    owner: str, repo: str, session: SessionDep, actor: CurrentActor
) -> Response:
    user = _watcher(actor)
    repository = repos.get_for(session, actor, owner, repo)
    service.delete_watch(session, user, repository)
    return Response(status_code=204)
