"""Web pages for issues, labels and milestones. Every form posts to a route guarded by
`CsrfProtected` and calls the same service functions as the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from opencodehub.accounts.models import Permission, User
from opencodehub.core.errors import Forbidden, NotFound, OCHError, ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.issues import service
from opencodehub.issues.models import REACTION_CONTENTS, Issue, IssueComment, Label
from opencodehub.notifications import service as notifications
from opencodehub.repos import service as repos
from opencodehub.repos.deps import WebRepoRead
from opencodehub.repos.models import Repository
from opencodehub.repos.views import ago, url_path
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.templating import render

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
ISSUES_PER_PAGE = 25
REACTION_EMOJI = {
    "+1": "👍",
    "-1": "👎",
    "laugh": "😄",
    "confused": "😕",
    "heart": "❤️",
    "hooray": "🎉",
    "rocket": "🚀",
    "eyes": "👀",
}
LOCK_REASON_NAMES = {
    "off-topic": "off-topic",
    "too heated": "too heated",
    "resolved": "resolved",
    "spam": "spam",
}


@dataclass
class RepoPage:
    repository: Repository
    base: str
    permission: Permission | None

    @property
    def can_triage(self) -> bool:
        return self.permission is not None and self.permission >= Permission.TRIAGE

    @property
    def can_write(self) -> bool:
        return (
            self.permission is not None
            and self.permission >= Permission.WRITE
            and not self.repository.is_archived
        )


def repo_page(repository: WebRepoRead, session: SessionDep, actor: CurrentActor) -> RepoPage:
    """The repository of an issues page (404 when the visitor may not read it, as
    `repos.deps.WebRepoFor` answers) and the visitor's permission on it."""
    return RepoPage(
        repository,
        f"/{url_path(repository.owner.username)}/{url_path(repository.name)}",
        service.permission(session, actor, repository),
    )


# Declared after `WebUser` and `CsrfProtected`: sign-in and the form's token come first.
RepoPageDep = Annotated[RepoPage, Depends(repo_page)]


def label_text_color(color: str) -> str:
    """Black or white text, whichever reads better on the label's color."""
    try:
        red, green, blue = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return "000000"
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return "000000" if luminance > 150 else "ffffff"


def _page(request: Request, template: str, view: RepoPage, **context: Any) -> Response:
    return render(
        request,
        template,
        repo=view.repository,
        base=view.base,
        tab="issues",
        can_triage=view.can_triage,
        can_write=view.can_write,
        url_path=url_path,
        ago=ago,
        emoji=REACTION_EMOJI,
        reaction_contents=REACTION_CONTENTS,
        **context,
    )


def _back(request: Request, url: str, exc: OCHError) -> Response:
    message = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
    return flash.redirect(request, url, message, "error")


# Label colors ----------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/issues/labels.css")
def label_styles(session: SessionDep, view: RepoPageDep) -> Response:
    """Label colors as a stylesheet: the CSP forbids inline styles."""
    rules = [
        f".issue-label-{label.id}{{background:#{label.color};color:#{label_text_color(label.color)}}}"
        for label in service.list_labels(session, view.repository)
    ]
    return Response(
        "\n".join(rules) + "\n",
        media_type="text/css",
        headers={"Cache-Control": "private, no-cache"},
    )


# The list --------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/issues")
def issue_list(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    view: RepoPageDep,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    query = q if q is not None else "is:issue is:open"
    try:
        filters = service.parse_query(query)
    except ValidationFailed:
        filters = service.parse_query("")
    if filters.kind is None and "is:pr" not in query:
        filters.kind = "issue"
    chosen = Page(number=page, per_page=ISSUES_PER_PAGE)
    try:
        rows = service.list_issues(session, view.repository, filters, chosen)
    except ValidationFailed:
        rows = []
    counts = service.count_by_state(session, view.repository, filters)
    without_state = " ".join(
        part for part in query.split() if part.lower() not in ("is:open", "is:closed")
    )
    watch = (
        notifications.watch_level(session, actor.user, view.repository.id)
        if actor.user is not None
        else None
    )
    return _page(
        request,
        "issues/list.html",
        view,
        page_title=f"Issues · {view.repository.full_name}",
        issues=rows[:ISSUES_PER_PAGE],
        has_next=len(rows) > ISSUES_PER_PAGE,
        page=page,
        query=query,
        filters=filters,
        counts=counts,
        open_query=f"{without_state} is:open".strip(),
        closed_query=f"{without_state} is:closed".strip(),
        labels=service.list_labels(session, view.repository),
        milestones=service.list_milestones(session, view.repository, state="open"),
        watch=watch,
        urlencode=urlencode,
    )


# New issue -------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/issues/new")
def new_issue(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: WebUser,
    view: RepoPageDep,
    template: Annotated[str | None, Query(max_length=200)] = None,
    title: Annotated[str | None, Query(max_length=256)] = None,
    body: Annotated[str | None, Query(max_length=65_536)] = None,
) -> Response:
    templates = service.issue_templates(settings, view.repository)
    chosen = next((t for t in templates if t.filename == template), None)
    if templates and chosen is None and template is None and len(templates) > 1:
        return _page(
            request,
            "issues/choose.html",
            view,
            page_title=f"New issue · {view.repository.full_name}",
            templates=templates,
        )
    if chosen is None and len(templates) == 1 and template is None:
        chosen = templates[0]
    return _page(
        request,
        "issues/new.html",
        view,
        page_title=f"New issue · {view.repository.full_name}",
        chosen_template=chosen,
        form_title=title if title is not None else (chosen.title if chosen else ""),
        form_body=body if body is not None else (chosen.body if chosen else ""),
        labels=service.list_labels(session, view.repository) if view.can_triage else [],
    )


@router.post("/{owner}/{repo}/issues/new")
def create_issue(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    title: FormStr = "",
    body: FormStr = "",
    labels: Annotated[list[str] | None, Form()] = None,
    template: FormStr = "",
) -> Response:
    chosen = next(
        (t for t in service.issue_templates(settings, view.repository) if t.filename == template),
        None,
    )
    wanted = list(labels or [])
    assignees: list[str] = []
    if chosen is not None:
        existing = {label.lower_name for label in service.list_labels(session, view.repository)}
        wanted += [name for name in chosen.labels if name.lower() in existing]
        assignees = [
            login
            for login in chosen.assignees
            if (account := repos.get_account(session, login)) is not None
            and service.can_be_assigned(session, view.repository, account)
        ]
    try:
        issue = service.create_issue(
            session,
            actor,
            view.repository,
            title=title,
            body=body,
            labels=wanted or None,
            assignees=assignees or None,
        )
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _page(
            request,
            "issues/new.html",
            view,
            page_title=f"New issue · {view.repository.full_name}",
            chosen_template=chosen,
            form_title=title[:256],
            form_body=body[:65_536],
            labels=service.list_labels(session, view.repository) if view.can_triage else [],
            error=exc.describe() if isinstance(exc, ValidationFailed) else exc.message,
            status_code=422 if isinstance(exc, ValidationFailed) else 403,
        )
    return RedirectResponse(f"{view.base}/issues/{issue.number}", status_code=303)


# One issue -------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/issues/{number:int}")
def show_issue(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    view: RepoPageDep,
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    if issue.is_pull_request:
        return RedirectResponse(f"{view.base}/pull/{issue.number}", status_code=302)
    renderer = service.ReferenceRenderer(session, actor, view.repository)
    items = service.timeline(session, issue)
    comment_ids = [item.comment.id for item in items if item.comment is not None]
    by_issue, by_comment = service.reaction_summaries(
        session, issue_ids=[issue.id], comment_ids=comment_ids, viewer=actor.user
    )
    entries: list[dict[str, Any]] = []
    for item in items:
        if item.comment is not None:
            entries.append(
                {
                    "kind": "comment",
                    "comment": item.comment,
                    "html": renderer.render(item.comment.body),
                    "reactions": by_comment.get(item.comment.id),
                    "may_edit": service.may_edit_comment(
                        session, actor, view.repository, item.comment
                    ),
                    "edited": item.comment.updated_at > item.comment.created_at,
                }
            )
        elif item.event is not None:
            entry: dict[str, Any] = {"kind": "event", "event": item.event, "data": item.data}
            if "source_issue_id" in item.data:
                source = service.visible_source(session, actor, item.data)
                if source is None and item.event.event == "cross-referenced":
                    continue  # from somewhere the viewer cannot see: not shown at all
                if source is not None:
                    source_repo, source_issue = source
                    entry["source_repo"] = source_repo
                    entry["source_issue"] = source_issue
                    entry["source_url"] = service.issue_path(source_repo, source_issue)
            if item.event.event in ("assigned", "unassigned"):
                assignee_id = item.data.get("assignee_id")
                entry["assignee"] = (
                    session.get(User, assignee_id) if isinstance(assignee_id, int) else None
                )
            entries.append(entry)
    if actor.user is not None:
        notifications.mark_issue_read(session, actor.user, issue)
    subscribed = (
        notifications.is_subscribed(session, actor.user, issue) if actor.user is not None else False
    )
    return _page(
        request,
        "issues/show.html",
        view,
        page_title=f"{issue.title} · Issue #{issue.number} · {view.repository.full_name}",
        issue=issue,
        body_html=renderer.render(issue.body),
        issue_reactions=by_issue.get(issue.id),
        entries=entries,
        may_edit=service.may_edit_issue(session, actor, view.repository, issue),
        may_comment=service.may_comment(session, actor, view.repository, issue),
        labels=service.list_labels(session, view.repository) if view.can_triage else [],
        assignable=service.assignable_users(session, view.repository) if view.can_triage else [],
        milestones=service.list_milestones(session, view.repository, state="open")
        if view.can_triage
        else [],
        lock_reasons=list(LOCK_REASON_NAMES),
        subscribed=subscribed,
        body_edits=len(service.issue_edits(session, issue)),
    )


def _to_issue(view: RepoPage, issue: Issue, anchor: str = "") -> str:
    return f"{view.base}/issues/{issue.number}{anchor}"


@router.post("/{owner}/{repo}/issues/{number:int}/comments")
def post_comment(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    body: FormStr = "",
    action: FormStr = "comment",
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    try:
        anchor = ""
        if body.strip():
            comment = service.add_comment(session, actor, view.repository, issue, body)
            anchor = f"#issuecomment-{comment.id}"
        if action == "close":
            service.set_state(session, actor, view.repository, issue, "closed", "completed")
        elif action == "close_not_planned":
            service.set_state(session, actor, view.repository, issue, "closed", "not_planned")
        elif action == "reopen":
            service.set_state(session, actor, view.repository, issue, "open")
        elif not body.strip():
            raise ValidationFailed.missing("IssueComment", "body")
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    return RedirectResponse(_to_issue(view, issue, anchor), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/edit")
def edit_issue(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    title: Annotated[str | None, Form()] = None,
    body: Annotated[str | None, Form()] = None,
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = title
    if body is not None:
        changes["body"] = body
    try:
        service.update_issue(session, actor, view.repository, issue, **changes)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    return RedirectResponse(_to_issue(view, issue), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/lock")
def lock_issue(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    locked: FormStr = "1",
    reason: FormStr = "",
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    try:
        service.set_lock(session, actor, view.repository, issue, locked == "1", reason or None)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    return RedirectResponse(_to_issue(view, issue), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/labels")
def set_issue_labels(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    labels: Annotated[list[str] | None, Form()] = None,
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    try:
        service.set_labels(session, actor, view.repository, issue, list(labels or []))
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    return RedirectResponse(_to_issue(view, issue), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/assignees")
def set_issue_assignees(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    assignees: Annotated[list[str] | None, Form()] = None,
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    try:
        if not service.can_triage(session, actor, view.repository):
            raise Forbidden("You cannot assign this issue.")
        service.update_issue(
            session, actor, view.repository, issue, assignees=list(assignees or [])
        )
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    return RedirectResponse(_to_issue(view, issue), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/milestone")
def set_issue_milestone(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    milestone: FormStr = "",
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    try:
        value = int(milestone) if milestone.isdigit() and len(milestone) < 10 else None
        service.set_milestone(session, actor, view.repository, issue, value)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    return RedirectResponse(_to_issue(view, issue), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/subscription")
def set_issue_subscription(
    request: Request,
    number: int,
    session: SessionDep,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    subscribe: FormStr = "1",
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    notifications.set_thread_subscription(session, user, issue, subscribed=subscribe == "1")
    return RedirectResponse(_to_issue(view, issue), status_code=303)


@router.post("/{owner}/{repo}/issues/{number:int}/reactions")
def toggle_reaction(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    content: FormStr = "",
    comment_id: FormStr = "",
) -> Response:
    issue = service.get_issue(session, view.repository, number)
    comment: IssueComment | None = None
    if comment_id:
        if not comment_id.isdigit() or len(comment_id) > 18:
            raise NotFound()
        comment = service.get_comment(session, view.repository, int(comment_id))
        if comment.issue_id != issue.id:
            raise NotFound()
    try:
        service.toggle_reaction(session, actor, view.repository, issue, comment, content)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, _to_issue(view, issue), exc)
    if request.headers.get("hx-request"):
        by_issue, by_comment = service.reaction_summaries(
            session,
            issue_ids=[issue.id] if comment is None else [],
            comment_ids=[comment.id] if comment is not None else [],
            viewer=user,
        )
        summary = by_comment.get(comment.id) if comment is not None else by_issue.get(issue.id)
        return _page(
            request,
            "issues/_reactions.html",
            view,
            issue=issue,
            target_comment=comment,
            summary=summary,
            may_react=True,
        )
    anchor = f"#issuecomment-{comment.id}" if comment is not None else ""
    return RedirectResponse(_to_issue(view, issue, anchor), status_code=303)


# Comments --------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/issues/comments/{comment_id:int}/edit")
def edit_comment_form(
    request: Request,
    comment_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    view: RepoPageDep,
) -> Response:
    comment = service.get_comment(session, view.repository, comment_id)
    if not service.may_edit_comment(session, actor, view.repository, comment):
        raise NotFound()
    issue = comment.issue
    return _page(
        request,
        "issues/_comment_form.html"
        if request.headers.get("hx-request")
        else "issues/comment_edit.html",
        view,
        page_title=f"Edit comment · {view.repository.full_name}",
        comment=comment,
        issue=issue,
        edits=service.comment_edits(session, comment),
        fragment=bool(request.headers.get("hx-request")),
    )


@router.post("/{owner}/{repo}/issues/comments/{comment_id:int}/edit")
def edit_comment(
    request: Request,
    comment_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    body: FormStr = "",
) -> Response:
    comment = service.get_comment(session, view.repository, comment_id)
    issue = comment.issue
    target = _comment_url(view, issue, comment)
    try:
        service.edit_comment(session, actor, view.repository, comment, body)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, target, exc)
    return RedirectResponse(target, status_code=303)


def _comment_url(view: RepoPage, issue: Issue, comment: IssueComment) -> str:
    kind = "pull" if issue.is_pull_request else "issues"
    return f"{view.base}/{kind}/{issue.number}#issuecomment-{comment.id}"


@router.post("/{owner}/{repo}/issues/comments/{comment_id:int}/delete")
def delete_comment(
    request: Request,
    comment_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
) -> Response:
    comment = service.get_comment(session, view.repository, comment_id)
    issue = comment.issue
    kind = "pull" if issue.is_pull_request else "issues"
    target = f"{view.base}/{kind}/{issue.number}"
    try:
        service.delete_comment(session, actor, view.repository, comment)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, target, exc)
    return flash.redirect(request, target, "Comment deleted.")


# Labels ----------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/labels")
def label_list(
    request: Request,
    session: SessionDep,
    view: RepoPageDep,
) -> Response:
    labels = service.list_labels(session, view.repository)
    counts = service.label_open_counts(session, view.repository)
    return _page(
        request,
        "issues/labels.html",
        view,
        page_title=f"Labels · {view.repository.full_name}",
        labels=labels,
        counts=counts,
        quote=quote,
    )


def _label_by_id(session: Session, repository: Repository, label_id: int) -> Label:
    label = session.get(Label, label_id) if 0 < label_id < 2**63 else None
    if label is None or label.repository_id != repository.id:
        raise NotFound()
    return label


@router.post("/{owner}/{repo}/labels")
def create_label(
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    name: FormStr = "",
    color: FormStr = "",
    description: FormStr = "",
) -> Response:
    try:
        service.create_label(
            session,
            actor,
            view.repository,
            name=name,
            color=color or None,
            description=description,
        )
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, f"{view.base}/labels", exc)
    return flash.redirect(request, f"{view.base}/labels", "Label created.")


@router.post("/{owner}/{repo}/labels/{label_id:int}/edit")
def edit_label(
    request: Request,
    label_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    name: FormStr = "",
    color: FormStr = "",
    description: FormStr = "",
) -> Response:
    label = _label_by_id(session, view.repository, label_id)
    try:
        service.update_label(
            session,
            actor,
            view.repository,
            label,
            new_name=name or None,
            color=color or None,
            description=description,
        )
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, f"{view.base}/labels", exc)
    return flash.redirect(request, f"{view.base}/labels", "Label updated.")


@router.post("/{owner}/{repo}/labels/{label_id:int}/delete")
def delete_label(
    request: Request,
    label_id: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
) -> Response:
    label = _label_by_id(session, view.repository, label_id)
    try:
        service.delete_label(session, actor, view.repository, label)
    except Forbidden as exc:
        session.rollback()
        return _back(request, f"{view.base}/labels", exc)
    return flash.redirect(request, f"{view.base}/labels", "Label deleted.")


# Milestones ------------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/milestones")
def milestone_list(
    request: Request,
    session: SessionDep,
    view: RepoPageDep,
    state: Annotated[str, Query(pattern="^(open|closed)$")] = "open",
) -> Response:
    rows = service.list_milestones(session, view.repository, state=state)
    counts = service.milestone_counts(session, [row.id for row in rows])
    now = datetime.now(UTC)
    return _page(
        request,
        "issues/milestones.html",
        view,
        page_title=f"Milestones · {view.repository.full_name}",
        milestones=rows,
        counts=counts,
        state=state,
        now=now,
    )


@router.get("/{owner}/{repo}/milestone/{number:int}")
def milestone_page(number: int, session: SessionDep, view: RepoPageDep) -> Response:
    milestone = service.get_milestone(session, view.repository, number)
    query = urlencode({"q": f'is:issue milestone:"{milestone.title}"'})
    return RedirectResponse(f"{view.base}/issues?{query}", status_code=302)


def _due(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationFailed.invalid(
            "Milestone", "due_on", "due date must be YYYY-MM-DD"
        ) from None


@router.post("/{owner}/{repo}/milestones")
def create_milestone(
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    title: FormStr = "",
    description: FormStr = "",
    due_on: FormStr = "",
) -> Response:
    try:
        service.create_milestone(
            session,
            actor,
            view.repository,
            title=title,
            description=description,
            due_on=_due(due_on),
        )
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, f"{view.base}/milestones", exc)
    return flash.redirect(request, f"{view.base}/milestones", "Milestone created.")


@router.post("/{owner}/{repo}/milestones/{number:int}/state")
def milestone_state(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
    state: FormStr = "closed",
) -> Response:
    milestone = service.get_milestone(session, view.repository, number)
    try:
        service.update_milestone(session, actor, view.repository, milestone, state=state)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        return _back(request, f"{view.base}/milestones", exc)
    return flash.redirect(request, f"{view.base}/milestones", f"Milestone {state}.")


@router.post("/{owner}/{repo}/milestones/{number:int}/delete")
def delete_milestone(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageDep,
) -> Response:
    milestone = service.get_milestone(session, view.repository, number)
    try:
        service.delete_milestone(session, actor, view.repository, milestone)
    except Forbidden as exc:
        session.rollback()
        return _back(request, f"{view.base}/milestones", exc)
    return flash.redirect(request, f"{view.base}/milestones", "Milestone deleted.")
