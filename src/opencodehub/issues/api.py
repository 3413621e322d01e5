"""REST API for issues, comments, labels, milestones, assignees and reactions, in GitHub's
shapes. Pull requests appear in the issue list, as on GitHub, with a `pull_request` object."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from opencodehub.accounts.schemas import SimpleUser
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.issues import service
from opencodehub.issues.models import Issue, IssueComment
from opencodehub.issues.schemas import (
    AssigneesBody,
    CommentBody,
    CommentOut,
    EventOut,
    IssueCreate,
    IssueOut,
    LabelCreate,
    LabelNames,
    LabelOut,
    LabelUpdate,
    LockBody,
    MilestoneCreate,
    MilestoneOut,
    ReactionCreate,
    ReactionOut,
    Serializer,
    dump,
    label_names,
)
from opencodehub.repos import service as repos
from opencodehub.repos.deps import RepoRead
from opencodehub.repos.models import Repository

router = APIRouter(tags=["issues"])

PREFIX = "/repos/{owner}/{repo}"
PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]
Number = Annotated[int, "issue number"]


class IssueUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | int | None = Field(default=None, max_length=1_000)
    body: str | None = Field(default=None, max_length=200_000)
    state: Literal["open", "closed"] | None = None
    state_reason: Literal["completed", "not_planned", "reopened"] | None = None
    assignee: str | None = Field(default=None, max_length=100)
    assignees: list[str] | None = Field(default=None, max_length=100)
    milestone: int | str | None = None
    labels: list[str | dict[str, Any]] | None = Field(default=None, max_length=100)


class MilestoneUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | None = Field(default=None, max_length=1_000)
    state: Literal["open", "closed"] | None = None
    description: str | None = Field(default=None, max_length=200_000)
    due_on: datetime | None = None


# Helpers ---------------------------------------------------------------------------------------


def _link(
    request: Request, response: Response, settings: Settings, page: Page, has_next: bool
) -> None:
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        f"{settings.effective_base_url}{request.url.path}", params, page, None, has_next
    )
    if header:
        response.headers["Link"] = header


def _paged(
    request: Request, response: Response, settings: Settings, page: Page, rows: list[Any]
) -> list[Any]:
    _link(request, response, settings, page, len(rows) > page.limit)
    return rows[: page.limit]


def _milestone_number(value: int | str | None) -> int | None:
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 9:
            raise ValidationFailed.invalid("Issue", "milestone", "milestone must be a number")
        return int(value)
    return value


def _assignee_list(assignee: str | None, assignees: list[str] | None) -> list[str] | None:
    if assignees is not None:
        return assignees
    if assignee is not None:
        return [assignee] if assignee else []
    return None


# Issues ----------------------------------------------------------------------------------------


@router.get(PREFIX + "/issues", response_model=list[IssueOut])
def list_issues(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    milestone: Annotated[str | None, Query(max_length=100)] = None,
    state: Literal["open", "closed", "all"] = "open",
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    creator: Annotated[str | None, Query(max_length=100)] = None,
    mentioned: Annotated[str | None, Query(max_length=100)] = None,
    labels: Annotated[str | None, Query(max_length=2000)] = None,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    sort: Literal["created", "updated", "comments"] = "created",
    direction: Literal["asc", "desc"] = "desc",
    since: datetime | None = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    chosen = Page.of(page, per_page)
    filters = service.IssueFilter(
        state=state,
        labels=[name.strip() for name in (labels or "").split(",") if name.strip()],
        assignee=assignee,
        creator=creator,
        mentioned=mentioned,
        milestone=milestone,
        q=q or "",
        sort=sort,
        direction=direction,
        since=since,
    )
    rows = _paged(
        request,
        response,
        settings,
        chosen,
        service.list_issues(session, repository, filters, chosen),
    )
    return dump(Serializer(session, settings, repository).issues(rows))


@router.post(PREFIX + "/issues", response_model=IssueOut, status_code=201)
def create_issue(
    body: IssueCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.create_issue(
        session,
        actor,
        repository,
        title=str(body.title),
        body=body.body,
        labels=label_names(body.labels) if body.labels is not None else None,
        assignees=_assignee_list(body.assignee, body.assignees),
        milestone=_milestone_number(body.milestone),
    )
    out = Serializer(session, settings, repository).issue(issue)
    return JSONResponse(dump(out), status_code=201, headers={"Location": out.url})


# Repository-wide comments before `/issues/{number}`, whose path would match "comments".


@router.get(PREFIX + "/issues/comments", response_model=list[CommentOut])
def list_repository_comments(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    direction: Literal["asc", "desc"] = "asc",
    since: datetime | None = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    chosen = Page.of(page, per_page)
    rows = service.list_comments(
        session, repository, None, chosen, since=since, direction=direction
    )
    rows = _paged(request, response, settings, chosen, rows)
    return dump(Serializer(session, settings, repository).comments(rows))


def _comment(session: Session, repository: Repository, comment_id: int) -> IssueComment:
    return service.get_comment(session, repository, comment_id)


@router.get(PREFIX + "/issues/comments/{comment_id}", response_model=CommentOut)
def get_comment(
    comment_id: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    comment = _comment(session, repository, comment_id)
    return dump(Serializer(session, settings, repository).comments([comment])[0])


@router.patch(PREFIX + "/issues/comments/{comment_id}", response_model=CommentOut)
def edit_comment(
    comment_id: int,
    body: CommentBody,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    comment = _comment(session, repository, comment_id)
    service.edit_comment(session, actor, repository, comment, body.body)
    return dump(Serializer(session, settings, repository).comments([comment])[0])


@router.delete(PREFIX + "/issues/comments/{comment_id}", status_code=204)
def delete_comment(
    comment_id: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    service.delete_comment(session, actor, repository, _comment(session, repository, comment_id))
    return Response(status_code=204)


@router.get(PREFIX + "/issues/comments/{comment_id}/reactions", response_model=list[ReactionOut])
def list_comment_reactions(
    comment_id: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    content: Annotated[str | None, Query(max_length=20)] = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    comment = _comment(session, repository, comment_id)
    issue = comment.issue
    chosen = Page.of(page, per_page)
    rows = service.list_reactions(session, issue, comment, content=content, page=chosen)
    serializer = Serializer(session, settings, repository)
    return dump(
        [serializer.reaction(row) for row in _paged(request, response, settings, chosen, rows)]
    )


@router.post(PREFIX + "/issues/comments/{comment_id}/reactions", response_model=ReactionOut)
def create_comment_reaction(
    comment_id: int,
    body: ReactionCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    comment = _comment(session, repository, comment_id)
    reaction, created = service.add_reaction(
        session, actor, repository, comment.issue, comment, body.content
    )
    out = Serializer(session, settings, repository).reaction(reaction)
    return JSONResponse(dump(out), status_code=201 if created else 200)


@router.delete(PREFIX + "/issues/comments/{comment_id}/reactions/{reaction_id}", status_code=204)
def delete_comment_reaction(
    comment_id: int,
    reaction_id: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    comment = _comment(session, repository, comment_id)
    service.delete_reaction(session, actor, repository, comment.issue, comment, reaction_id)
    return Response(status_code=204)


@router.get(PREFIX + "/issues/{number}", response_model=IssueOut)
def get_issue(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    return dump(Serializer(session, settings, repository).issue(issue))


@router.patch(PREFIX + "/issues/{number}", response_model=IssueOut)
def update_issue(
    number: int,
    body: IssueUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    sent = body.model_fields_set
    changes: dict[str, Any] = {}
    if "title" in sent and body.title is not None:
        changes["title"] = str(body.title)
    if "body" in sent:
        changes["body"] = body.body or ""
    if "state" in sent and body.state is not None:
        changes["state"] = body.state
    if "state_reason" in sent:
        changes["state_reason"] = body.state_reason
    if "labels" in sent:
        changes["labels"] = label_names(body.labels)
    if "assignees" in sent or "assignee" in sent:
        changes["assignees"] = _assignee_list(body.assignee, body.assignees) or []
    if "milestone" in sent:
        changes["milestone"] = _milestone_number(body.milestone)
    service.update_issue(session, actor, repository, issue, **changes)
    return dump(Serializer(session, settings, repository).issue(issue))


@router.get(PREFIX + "/issues/{number}/comments", response_model=list[CommentOut])
def list_issue_comments(
    number: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    since: datetime | None = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    issue = service.get_issue(session, repository, number)
    chosen = Page.of(page, per_page)
    rows = service.list_comments(session, repository, issue, chosen, since=since)
    rows = _paged(request, response, settings, chosen, rows)
    return dump(Serializer(session, settings, repository).comments(rows))


@router.post(PREFIX + "/issues/{number}/comments", response_model=CommentOut, status_code=201)
def create_comment(
    number: int,
    body: CommentBody,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    comment = service.add_comment(session, actor, repository, issue, body.body)
    out = Serializer(session, settings, repository).comment(
        comment, issue.number, pull=issue.is_pull_request
    )
    return JSONResponse(dump(out), status_code=201, headers={"Location": out.url})


@router.get(PREFIX + "/issues/{number}/events", response_model=list[EventOut])
def list_issue_events(
    number: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    issue = service.get_issue(session, repository, number)
    chosen = Page.of(page, per_page)
    rows = _paged(request, response, settings, chosen, service.list_events(session, issue, chosen))
    serializer = Serializer(session, settings, repository)
    # Cross-references from places the caller cannot see are left out, not just blanked.
    shown = [
        row
        for row in rows
        if row.event != "cross-referenced"
        or service.visible_source(session, actor, service.event_data(row)) is not None
    ]
    return dump([serializer.event(row, issue.number) for row in shown])


@router.get(PREFIX + "/issues/{number}/timeline")
def list_issue_timeline(
    number: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    """Comments and events in order. A cross-reference from a place the caller cannot see is
    left out, so its title never leaks."""
    issue = service.get_issue(session, repository, number)
    serializer = Serializer(session, settings, repository)
    items: list[dict[str, Any]] = []
    for item in service.timeline(session, issue):
        if item.comment is not None:
            out = serializer.comment(item.comment, issue.number, pull=issue.is_pull_request)
            comment = dump(out)
            items.append({**comment, "event": "commented", "actor": comment["user"]})
            continue
        assert item.event is not None
        data = dump(serializer.event(item.event, issue.number))
        if item.event.event == "cross-referenced":
            source = service.visible_source(session, actor, item.data)
            if source is None:
                continue
            source_repo, source_issue = source
            source_json = dump(Serializer(session, settings, source_repo).issue(source_issue))
            data["source"] = {"type": "issue", "issue": source_json}
        items.append(data)
    chosen = Page.of(page, per_page)
    window = items[chosen.offset : chosen.offset + chosen.limit + 1]
    return _paged(request, response, settings, chosen, window)


# Issue labels ----------------------------------------------------------------------------------


def _labels_out(session: Session, settings: Settings, repository: Repository, issue: Issue) -> Any:
    serializer = Serializer(session, settings, repository)
    return dump([serializer.label(label) for label in issue.labels])


@router.get(PREFIX + "/issues/{number}/labels", response_model=list[LabelOut])
def list_issue_labels(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    return _labels_out(session, settings, repository, issue)


def _names_from(payload: Any) -> list[str]:
    """GitHub accepts `{"labels": [...]}`, a bare array of names, or `[{"name": ...}]`."""
    if isinstance(payload, dict):
        payload = LabelNames.model_validate(payload).labels
    if not isinstance(payload, list) or len(payload) > 100:
        raise ValidationFailed.invalid("Label", "labels", "labels must be a list of names")
    names = label_names([item for item in payload if isinstance(item, str | dict)])
    if len(names) != len(payload):
        raise ValidationFailed.invalid("Label", "labels", "labels must be a list of names")
    return names


@router.post(PREFIX + "/issues/{number}/labels", response_model=list[LabelOut])
def add_issue_labels(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    payload: Annotated[Any, Body()] = None,
) -> Any:
    issue = service.get_issue(session, repository, number)
    service.add_labels(session, actor, repository, issue, _names_from(payload))
    return _labels_out(session, settings, repository, issue)


@router.put(PREFIX + "/issues/{number}/labels", response_model=list[LabelOut])
def set_issue_labels(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    payload: Annotated[Any, Body()] = None,
) -> Any:
    issue = service.get_issue(session, repository, number)
    service.set_labels(session, actor, repository, issue, _names_from(payload or []))
    return _labels_out(session, settings, repository, issue)


@router.delete(PREFIX + "/issues/{number}/labels", status_code=204)
def clear_issue_labels(
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    issue = service.get_issue(session, repository, number)
    service.set_labels(session, actor, repository, issue, [])
    return Response(status_code=204)


@router.delete(PREFIX + "/issues/{number}/labels/{name}", response_model=list[LabelOut])
def remove_issue_label(
    number: int,
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    service.remove_label(session, actor, repository, issue, name)
    return _labels_out(session, settings, repository, issue)


# Assignees -------------------------------------------------------------------------------------


@router.get(PREFIX + "/assignees", response_model=list[SimpleUser])
def list_assignees(
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    serializer = Serializer(session, settings, repository)
    return dump([serializer.user(user) for user in service.assignable_users(session, repository)])


@router.get(PREFIX + "/assignees/{assignee}", status_code=204)
def check_assignee(
    assignee: str,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    user = repos.get_account(session, assignee)
    if user is None or not service.can_be_assigned(session, repository, user):
        raise NotFound()
    return Response(status_code=204)


@router.post(PREFIX + "/issues/{number}/assignees", response_model=IssueOut, status_code=201)
def add_assignees(
    number: int,
    body: AssigneesBody,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    service.add_assignees(session, actor, repository, issue, body.assignees)
    return JSONResponse(dump(Serializer(session, settings, repository).issue(issue)), 201)


@router.delete(PREFIX + "/issues/{number}/assignees", response_model=IssueOut)
def remove_assignees(
    number: int,
    body: AssigneesBody,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    service.remove_assignees(session, actor, repository, issue, body.assignees)
    return dump(Serializer(session, settings, repository).issue(issue))


# Locking ---------------------------------------------------------------------------------------


@router.put(PREFIX + "/issues/{number}/lock", status_code=204)
def lock_issue(
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
    body: LockBody | None = None,
) -> Response:
    issue = service.get_issue(session, repository, number)
    service.set_lock(session, actor, repository, issue, True, body.lock_reason if body else None)
    return Response(status_code=204)


@router.delete(PREFIX + "/issues/{number}/lock", status_code=204)
def unlock_issue(
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    issue = service.get_issue(session, repository, number)
    service.set_lock(session, actor, repository, issue, False)
    return Response(status_code=204)


# Issue reactions -------------------------------------------------------------------------------


@router.get(PREFIX + "/issues/{number}/reactions", response_model=list[ReactionOut])
def list_issue_reactions(
    number: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    content: Annotated[str | None, Query(max_length=20)] = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    issue = service.get_issue(session, repository, number)
    chosen = Page.of(page, per_page)
    rows = service.list_reactions(session, issue, None, content=content, page=chosen)
    serializer = Serializer(session, settings, repository)
    return dump(
        [serializer.reaction(row) for row in _paged(request, response, settings, chosen, rows)]
    )


@router.post(PREFIX + "/issues/{number}/reactions", response_model=ReactionOut)
def create_issue_reaction(
    number: int,
    body: ReactionCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    issue = service.get_issue(session, repository, number)
    reaction, created = service.add_reaction(session, actor, repository, issue, None, body.content)
    out = Serializer(session, settings, repository).reaction(reaction)
    return JSONResponse(dump(out), status_code=201 if created else 200)


@router.delete(PREFIX + "/issues/{number}/reactions/{reaction_id}", status_code=204)
def delete_issue_reaction(
    number: int,
    reaction_id: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    issue = service.get_issue(session, repository, number)
    service.delete_reaction(session, actor, repository, issue, None, reaction_id)
    return Response(status_code=204)


# Repository labels -----------------------------------------------------------------------------


@router.get(PREFIX + "/labels", response_model=list[LabelOut])
def list_labels(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    chosen = Page.of(page, per_page)
    rows = _paged(
        request, response, settings, chosen, service.list_labels(session, repository, chosen)
    )
    serializer = Serializer(session, settings, repository)
    return dump([serializer.label(label) for label in rows])


@router.post(PREFIX + "/labels", response_model=LabelOut, status_code=201)
def create_label(
    body: LabelCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    label = service.create_label(
        session, actor, repository, name=body.name, color=body.color, description=body.description
    )
    out = Serializer(session, settings, repository).label(label)
    return JSONResponse(dump(out), status_code=201, headers={"Location": out.url})


@router.get(PREFIX + "/labels/{name}", response_model=LabelOut)
def get_label(
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    return dump(
        Serializer(session, settings, repository).label(
            service.get_label(session, repository, name)
        )
    )


@router.patch(PREFIX + "/labels/{name}", response_model=LabelOut)
def update_label(
    name: str,
    body: LabelUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    label = service.get_label(session, repository, name)
    service.update_label(
        session,
        actor,
        repository,
        label,
        new_name=body.new_name,
        color=body.color,
        description=body.description,
    )
    return dump(Serializer(session, settings, repository).label(label))


@router.delete(PREFIX + "/labels/{name}", status_code=204)
def delete_label(
    name: str,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    service.delete_label(session, actor, repository, service.get_label(session, repository, name))
    return Response(status_code=204)


# Milestones ------------------------------------------------------------------------------------


@router.get(PREFIX + "/milestones", response_model=list[MilestoneOut])
def list_milestones(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    state: Literal["open", "closed", "all"] = "open",
    sort: Literal["due_on", "completeness"] = "due_on",
    direction: Literal["asc", "desc"] = "asc",
    page: PageNumber = None,
    per_page: PerPage = None,
) -> Any:
    chosen = Page.of(page, per_page)
    rows = service.list_milestones(
        session, repository, state=state, sort=sort, direction=direction, page=chosen
    )
    rows = _paged(request, response, settings, chosen, rows)
    return dump(Serializer(session, settings, repository).milestones(rows))


@router.post(PREFIX + "/milestones", response_model=MilestoneOut, status_code=201)
def create_milestone(
    body: MilestoneCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    milestone = service.create_milestone(
        session,
        actor,
        repository,
        title=body.title,
        state=body.state,
        description=body.description,
        due_on=body.due_on,
    )
    out = Serializer(session, settings, repository).milestone(milestone, (0, 0))
    return JSONResponse(dump(out), status_code=201, headers={"Location": out.url})


@router.get(PREFIX + "/milestones/{number}", response_model=MilestoneOut)
def get_milestone(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    milestone = service.get_milestone(session, repository, number)
    return dump(Serializer(session, settings, repository).milestone(milestone))


@router.patch(PREFIX + "/milestones/{number}", response_model=MilestoneOut)
def update_milestone(
    number: int,
    body: MilestoneUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Any:
    milestone = service.get_milestone(session, repository, number)
    changes = {key: getattr(body, key) for key in body.model_fields_set}
    if changes.get("state", "open") is None:
        changes.pop("state")
    service.update_milestone(session, actor, repository, milestone, **changes)
    return dump(Serializer(session, settings, repository).milestone(milestone))


@router.delete(PREFIX + "/milestones/{number}", status_code=204)
def delete_milestone(
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    service.delete_milestone(
        session, actor, repository, service.get_milestone(session, repository, number)
    )
    return Response(status_code=204)
