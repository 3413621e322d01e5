"""REST API for pull request reviews, review comments and requested reviewers, in GitHub's
shapes.

Reviews: `GET/POST /repos/{o}/{r}/pulls/{n}/reviews`, `GET/PUT/DELETE .../reviews/{id}`,
`POST .../reviews/{id}/events`, `PUT .../reviews/{id}/dismissals`, `GET .../reviews/{id}/comments`.
Comments: `GET/POST .../pulls/{n}/comments` (with `in_reply_to`), `POST .../comments/{id}/replies`,
`GET /repos/{o}/{r}/pulls/comments`, `GET/PATCH/DELETE /repos/{o}/{r}/pulls/comments/{id}`.
Reviewers: `GET/POST/DELETE .../pulls/{n}/requested_reviewers`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.accounts.schemas import SimpleUser, TeamSimple, node_id
from opencodehub.config import Settings
from opencodehub.core.events import EventBus
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import isoformat
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep
from opencodehub.pulls import reviews
from opencodehub.pulls.models import PullRequest, PullReview, ReviewComment
from opencodehub.repos.api import redirect_moved_repository
from opencodehub.repos.authz import repository_permission
from opencodehub.repos.deps import RepoRead
from opencodehub.repos.models import Repository
from opencodehub.repos.schemas import urls_for

router = APIRouter(tags=["pulls"], dependencies=[Depends(redirect_moved_repository)])

REPO = "/repos/{owner}/{repo}"
PULL = REPO + "/pulls/{number}"
Number = Annotated[int, Path(ge=1, le=2**31 - 1)]
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]
LineNumber = Annotated[int | None, Field(default=None, ge=1, le=10_000_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReviewCommentIn(_In):
    path: str
    body: str = ""
    position: LineNumber = None
    line: LineNumber = None
    side: str | None = None
    start_line: LineNumber = None
    start_side: str | None = None


class ReviewCreate(_In):
    commit_id: str | None = None
    body: str | None = None
    event: str | None = None
    comments: list[ReviewCommentIn] = Field(default_factory=list, max_length=1000)


class ReviewUpdate(_In):
    body: str


class ReviewEvent(_In):
    event: str
    body: str | None = None


class ReviewDismissal(_In):
    message: str
    event: str | None = None


class CommentCreate(_In):
    body: str
    commit_id: str | None = None
    path: str | None = None
    position: LineNumber = None
    line: LineNumber = None
    side: str | None = None
    start_line: LineNumber = None
    start_side: str | None = None
    in_reply_to: Annotated[int | None, Field(default=None, ge=1, le=2**63 - 1)] = None
    subject_type: str | None = None


class CommentReply(_In):
    body: str


class CommentUpdate(_In):
    body: str


class ReviewersIn(_In):
    reviewers: list[str] = Field(default_factory=list, max_length=100)
    team_reviewers: list[str] = Field(default_factory=list, max_length=100)


# Shapes ----------------------------------------------------------------------------------------


def _events(request: Request) -> EventBus | None:
    return getattr(request.app.state, "events", None)


def _association(session: Session, repository: Repository, user: User | None) -> str:
    if user is None:
        return "NONE"
    if repository.owner_id == user.id:
        return "OWNER"
    held = repository_permission(session, Actor(user=user, method="system"), repository)
    if held is not None and held >= Permission.WRITE:
        return "COLLABORATOR"
    return "CONTRIBUTOR"


def _urls(settings: Settings, repository: Repository, number: int) -> tuple[str, str]:
    urls = urls_for(settings)
    api = f"{urls.api}/repos/{repository.full_name}"
    html = urls.html(f"{repository.full_name}/pull/{number}")
    return api, html


def review_json(
    session: Session,
    settings: Settings,
    repository: Repository,
    pull_request: PullRequest,
    review: PullReview,
) -> dict[str, Any]:
    api, html = _urls(settings, repository, pull_request.number)
    review_html = f"{html}#pullrequestreview-{review.id}"
    data: dict[str, Any] = {
        "id": review.id,
        "node_id": node_id("PullRequestReview", review.id),
        "user": SimpleUser.of(review.user, urls_for(settings)).model_dump(mode="json")
        if review.user is not None
        else None,
        "body": review.body,
        "state": review.state.value,
        "html_url": review_html,
        "pull_request_url": f"{api}/pulls/{pull_request.number}",
        "author_association": _association(session, repository, review.user),
        "_links": {
            "html": {"href": review_html},
            "pull_request": {"href": f"{api}/pulls/{pull_request.number}"},
        },
        "commit_id": review.commit_id,
    }
    if review.submitted_at is not None:
        data["submitted_at"] = isoformat(review.submitted_at)
    return data


def comment_json(
    session: Session,
    settings: Settings,
    repository: Repository,
    pull_request: PullRequest,
    comment: ReviewComment,
) -> dict[str, Any]:
    api, html = _urls(settings, repository, pull_request.number)
    url = f"{api}/pulls/comments/{comment.id}"
    comment_html = f"{html}#discussion_r{comment.id}"
    data: dict[str, Any] = {
        "url": url,
        "pull_request_review_id": comment.review_id,
        "id": comment.id,
        "node_id": node_id("PullRequestReviewComment", comment.id),
        "diff_hunk": comment.diff_hunk,
        "path": comment.path,
        "position": comment.position,
        "original_position": comment.original_position,
        "commit_id": comment.commit_id,
        "original_commit_id": comment.original_commit_id,
        "user": SimpleUser.of(comment.user, urls_for(settings)).model_dump(mode="json")
        if comment.user is not None
        else None,
        "body": comment.body,
        "created_at": isoformat(comment.created_at),
        "updated_at": isoformat(comment.updated_at),
        "html_url": comment_html,
        "pull_request_url": f"{api}/pulls/{pull_request.number}",
        "author_association": _association(session, repository, comment.user),
        "_links": {
            "self": {"href": url},
            "html": {"href": comment_html},
            "pull_request": {"href": f"{api}/pulls/{pull_request.number}"},
        },
        "start_line": comment.start_line,
        "original_start_line": comment.original_start_line,
        "start_side": comment.start_side.value if comment.start_side else None,
        "line": comment.line,
        "original_line": comment.original_line,
        "side": comment.side.value,
        "subject_type": "line",
    }
    if comment.in_reply_to_id is not None:
        data["in_reply_to_id"] = comment.in_reply_to_id
    return data


def _paginate(request: Request, response: Response, page: Page, has_next: bool) -> None:
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        str(request.url.replace(query="")), params, page, total=None, has_next=has_next
    )
    if header:
        response.headers["Link"] = header


def _pull_of(session: Session, comment: ReviewComment) -> PullRequest:
    pull_request = session.get(PullRequest, comment.pull_request_id)
    assert pull_request is not None
    return pull_request


# Reviews ---------------------------------------------------------------------------------------


@router.get(f"{PULL}/reviews")
def list_reviews(
    number: Number,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[dict[str, Any]]:
    pull_request = reviews.get_pull_request(session, repository, number)
    paging = Page.of(page, per_page)
    rows = reviews.list_reviews(session, actor, pull_request)
    chunk = rows[paging.offset : paging.offset + paging.limit]
    _paginate(request, response, paging, len(rows) > paging.offset + paging.limit)
    return [review_json(session, settings, repository, pull_request, r) for r in chunk]


@router.post(f"{PULL}/reviews")
def create_review(
    number: Number,
    body: ReviewCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.create_review(
        session,
        settings,
        actor,
        pull_request,
        body=body.body,
        event=body.event,
        commit_id=body.commit_id,
        comments=[
            reviews.CommentInput(
                body=c.body,
                path=c.path,
                line=c.line,
                side=c.side,
                start_line=c.start_line,
                start_side=c.start_side,
                position=c.position,
            )
            for c in body.comments
        ],
        events=_events(request),
    )
    return review_json(session, settings, repository, pull_request, review)


@router.get(f"{PULL}/reviews/{{review_id}}")
def get_review(
    number: Number,
    review_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.get_review(session, actor, pull_request, review_id)
    return review_json(session, settings, repository, pull_request, review)


@router.put(f"{PULL}/reviews/{{review_id}}")
def update_review(
    number: Number,
    review_id: RecordId,
    body: ReviewUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.get_review(session, actor, pull_request, review_id)
    reviews.update_review(session, actor, review, body=body.body)
    return review_json(session, settings, repository, pull_request, review)


@router.delete(f"{PULL}/reviews/{{review_id}}")
def delete_pending_review(
    number: Number,
    review_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.get_review(session, actor, pull_request, review_id)
    shown = review_json(session, settings, repository, pull_request, review)
    reviews.delete_pending_review(session, actor, review)
    return shown


@router.post(f"{PULL}/reviews/{{review_id}}/events")
def submit_review(
    number: Number,
    review_id: RecordId,
    body: ReviewEvent,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.get_review(session, actor, pull_request, review_id)
    reviews.submit_review(session, actor, pull_request, review, event=body.event, body=body.body)
    return review_json(session, settings, repository, pull_request, review)


@router.put(f"{PULL}/reviews/{{review_id}}/dismissals")
def dismiss_review(
    number: Number,
    review_id: RecordId,
    body: ReviewDismissal,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.get_review(session, actor, pull_request, review_id)
    reviews.dismiss_review(session, actor, pull_request, review, message=body.message)
    return review_json(session, settings, repository, pull_request, review)


@router.get(f"{PULL}/reviews/{{review_id}}/comments")
def list_review_comments(
    number: Number,
    review_id: RecordId,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[dict[str, Any]]:
    pull_request = reviews.get_pull_request(session, repository, number)
    review = reviews.get_review(session, actor, pull_request, review_id)
    paging = Page.of(page, per_page)
    rows = reviews.list_comments(
        session,
        actor,
        repository,
        pull_request,
        review=review,
        offset=paging.offset,
        limit=paging.limit + 1,
    )
    _paginate(request, response, paging, len(rows) > paging.limit)
    return [
        comment_json(session, settings, repository, pull_request, c) for c in rows[: paging.limit]
    ]


# Review comments -------------------------------------------------------------------------------


@router.get(f"{REPO}/pulls/comments")
def list_repository_comments(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    direction: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[dict[str, Any]]:
    paging = Page.of(page, per_page)
    rows = reviews.list_comments(
        session,
        actor,
        repository,
        offset=paging.offset,
        limit=paging.limit + 1,
        newest_first=direction == "desc",
    )
    _paginate(request, response, paging, len(rows) > paging.limit)
    return [
        comment_json(session, settings, repository, _pull_of(session, c), c)
        for c in rows[: paging.limit]
    ]


@router.get(f"{REPO}/pulls/comments/{{comment_id}}")
def get_comment(
    comment_id: RecordId,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> dict[str, Any]:
    comment = reviews.get_comment(session, actor, repository, comment_id)
    return comment_json(session, settings, repository, _pull_of(session, comment), comment)


@router.patch(f"{REPO}/pulls/comments/{{comment_id}}")
def update_comment(
    comment_id: RecordId,
    body: CommentUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    comment = reviews.get_comment(session, actor, repository, comment_id)
    reviews.edit_comment(session, actor, repository, comment, body=body.body)
    return comment_json(session, settings, repository, _pull_of(session, comment), comment)


@router.delete(f"{REPO}/pulls/comments/{{comment_id}}", status_code=204)
def delete_comment(
    comment_id: RecordId,
    session: SessionDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> Response:
    comment = reviews.get_comment(session, actor, repository, comment_id)
    reviews.delete_comment(session, actor, repository, comment)
    return Response(status_code=204)


@router.get(f"{PULL}/comments")
def list_pull_comments(
    number: Number,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    direction: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,
    per_page: PerPage = None,
    page: PageNumber = None,
) -> list[dict[str, Any]]:
    pull_request = reviews.get_pull_request(session, repository, number)
    paging = Page.of(page, per_page)
    rows = reviews.list_comments(
        session,
        actor,
        repository,
        pull_request,
        offset=paging.offset,
        limit=paging.limit + 1,
        newest_first=direction == "desc",
    )
    _paginate(request, response, paging, len(rows) > paging.limit)
    return [
        comment_json(session, settings, repository, pull_request, c) for c in rows[: paging.limit]
    ]


@router.post(f"{PULL}/comments", status_code=201)
def create_comment(
    number: Number,
    body: CommentCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    comment = reviews.create_comment(
        session,
        settings,
        actor,
        pull_request,
        body=body.body,
        commit_id=body.commit_id,
        path=body.path,
        line=body.line,
        side=body.side,
        start_line=body.start_line,
        start_side=body.start_side,
        position=body.position,
        in_reply_to=body.in_reply_to,
    )
    out = comment_json(session, settings, repository, pull_request, comment)
    response.headers["Location"] = out["url"]
    return out


@router.post(f"{PULL}/comments/{{comment_id}}/replies", status_code=201)
def reply_to_comment(
    number: Number,
    comment_id: RecordId,
    body: CommentReply,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    comment = reviews.create_comment(
        session, settings, actor, pull_request, body=body.body, in_reply_to=comment_id
    )
    return comment_json(session, settings, repository, pull_request, comment)


# Requested reviewers ---------------------------------------------------------------------------


def requested_json(
    settings: Settings, repository: Repository, requested: reviews.RequestedReviewers
) -> dict[str, Any]:
    urls = urls_for(settings)
    return {
        "users": [SimpleUser.of(u, urls).model_dump(mode="json") for u in requested.users],
        "teams": [
            TeamSimple.of(t, repository.owner, urls).model_dump(mode="json")
            for t in requested.teams
        ],
    }


def _pull_response(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull_request: PullRequest,
) -> dict[str, Any]:
    """The pull request in GitHub's shape, its requested reviewers filled in."""
    from opencodehub.pulls.api import pull_json

    data = pull_json(session, settings, actor, repository, pull_request)
    requested = requested_json(
        settings, repository, reviews.requested_reviewers(session, pull_request)
    )
    data["requested_reviewers"] = requested["users"]
    data["requested_teams"] = requested["teams"]
    return data


@router.get(f"{PULL}/requested_reviewers")
def list_requested_reviewers(
    number: Number,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    return requested_json(settings, repository, reviews.requested_reviewers(session, pull_request))


@router.post(f"{PULL}/requested_reviewers", status_code=201)
def request_reviewers(
    number: Number,
    body: ReviewersIn,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    reviews.request_reviewers(
        session, actor, pull_request, reviewers=body.reviewers, team_reviewers=body.team_reviewers
    )
    return _pull_response(session, settings, actor, repository, pull_request)


@router.delete(f"{PULL}/requested_reviewers")
def remove_requested_reviewers(
    number: Number,
    body: ReviewersIn,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    _user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull_request = reviews.get_pull_request(session, repository, number)
    reviews.remove_requested_reviewers(
        session, actor, pull_request, reviewers=body.reviewers, team_reviewers=body.team_reviewers
    )
    return _pull_response(session, settings, actor, repository, pull_request)
