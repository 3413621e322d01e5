"""Web pages for the notification inbox, notification settings and watching a repository."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import Response

from opencodehub.accounts.models import Permission
from opencodehub.core.errors import ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep
from opencodehub.issues.models import Issue
from opencodehub.notifications import service
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository
from opencodehub.repos.views import ago
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.templating import render

router = APIRouter(include_in_schema=False)

PER_PAGE = 50
FILTERS = ("unread", "participating", "all")


@router.get("/notifications")
def inbox(
    request: Request,
    session: SessionDep,
    user: WebUser,
    filter: Annotated[str, Query(pattern="^(unread|participating|all)$")] = "unread",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    filters = service.InboxFilter(all=filter == "all", participating=filter == "participating")
    chosen = Page(number=page, per_page=PER_PAGE)
    threads = service.list_threads(session, user, filters, chosen)
    rows: list[dict[str, Any]] = []
    for thread in threads[:PER_PAGE]:
        issue = session.get(Issue, thread.issue_id)
        repository = session.get(Repository, thread.repository_id)
        if issue is None or repository is None:
            continue
        kind = "pull" if issue.is_pull_request else "issues"
        anchor = f"#issuecomment-{thread.latest_comment_id}" if thread.latest_comment_id else ""
        rows.append(
            {
                "thread": thread,
                "issue": issue,
                "repository": repository,
                "url": f"/{repository.full_name}/{kind}/{issue.number}{anchor}",
            }
        )
    return render(
        request,
        "notifications/inbox.html",
        page_title="Notifications",
        rows=rows,
        filter=filter,
        filters=FILTERS,
        page=page,
        has_next=len(threads) > PER_PAGE,
        unread=service.unread_count(session, user),
        ago=ago,
    )


def _back_to_inbox(request: Request, message: str | None = None) -> Response:
    return flash.redirect(request, "/notifications", message)


@router.post("/notifications/read-all")
def read_all(request: Request, session: SessionDep, user: WebUser, _: CsrfProtected) -> Response:
    service.mark_all_read(session, user)
    return _back_to_inbox(request, "All notifications marked as read.")


@router.post("/notifications/{thread_id:int}/read")
def read_one(
    request: Request, thread_id: int, session: SessionDep, user: WebUser, _: CsrfProtected
) -> Response:
    service.mark_thread_read(session, service.get_thread(session, user, thread_id))
    return _back_to_inbox(request)


@router.post("/notifications/{thread_id:int}/done")
def done_one(
    request: Request, thread_id: int, session: SessionDep, user: WebUser, _: CsrfProtected
) -> Response:
    service.mark_thread_done(session, service.get_thread(session, user, thread_id))
    return _back_to_inbox(request)


@router.get("/settings/notifications")
def settings_page(request: Request, session: SessionDep, user: WebUser) -> Response:
    return render(
        request,
        "notifications/settings.html",
        page_title="Notification settings",
        active="notifications",
        prefs=service.user_settings(session, user),
        email=user.primary_email,
        watched=service.watched_repositories(session, user),
    )


@router.post("/settings/notifications")
def save_settings(
    request: Request,
    session: SessionDep,
    user: WebUser,
    _: CsrfProtected,
    email_enabled: Annotated[str, Form()] = "",
) -> Response:
    service.update_settings(session, user, email_enabled=email_enabled == "1")
    return flash.redirect(request, "/settings/notifications", "Notification settings saved.")


@router.post("/{owner}/{repo}/subscription")
def watch_repository(
    request: Request,
    owner: str,
    repo: str,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    level: Annotated[str, Form(max_length=20)] = "watching",
) -> Response:
    repository = repos.get_for(session, actor, owner, repo, Permission.READ)
    try:
        service.set_watch(session, user, repository, level)
    except ValidationFailed as exc:
        session.rollback()
        return flash.redirect(request, f"/{repository.full_name}/issues", exc.describe(), "error")
    return flash.redirect(
        request, f"/{repository.full_name}/issues", "Notification settings saved."
    )
