"""REST API for pull requests and merges, in GitHub's shapes.

`GET/POST /repos/{o}/{r}/pulls`, `GET/PATCH /pulls/{n}` (with `Accept:
application/vnd.github.diff` or `.patch` for the raw diff or the commits as patches),
`/pulls/{n}/commits`, `/pulls/{n}/files` (paged, at most 3,000 files as on GitHub) and
`GET/PUT /pulls/{n}/merge`. Where OpenCodeHub adds to GitHub: `PUT .../merge` also takes
`delete_branch` (delete the head branch once merged).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.accounts.schemas import SimpleUser, TeamSimple, node_id
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.core.events import EventBus
from opencodehub.core.pagination import Page, link_header
from opencodehub.core.routing import APIRouter
from opencodehub.core.time import isoformat
from opencodehub.deps import CurrentActor, CurrentUser, SessionDep, SettingsDep
from opencodehub.pulls import reviews, service
from opencodehub.pulls.models import PullRequest, ReviewComment
from opencodehub.repos import git_schemas
from opencodehub.repos import service as repos
from opencodehub.repos.api import redirect_moved_repository
from opencodehub.repos.authz import repository_permission
from opencodehub.repos.content_api import users_by_email
from opencodehub.repos.deps import RepoRead
from opencodehub.repos.models import Repository
from opencodehub.repos.schemas import repository_json, urls_for

router = APIRouter(tags=["pulls"], dependencies=[Depends(redirect_moved_repository)])

REPO = "/repos/{owner}/{repo}"
PULL = REPO + "/pulls/{number}"
DIFF_TYPES = ("application/vnd.github.diff", "application/vnd.github.v3.diff")
PATCH_TYPES = ("application/vnd.github.patch", "application/vnd.github.v3.patch")

PerPage = Annotated[int | None, Query(ge=1, le=1000)]
PageNumber = Annotated[int | None, Query(ge=1, le=1_000_000)]
Number = Annotated[int, Query(ge=1, le=2**31 - 1)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PullCreate(_In):
    title: str | None = Field(default=None, max_length=100_000)
    head: str = Field(min_length=1, max_length=1024)
    head_repo: str | None = Field(default=None, max_length=300)
    base: str = Field(min_length=1, max_length=1024)
    body: str | None = Field(default=None, max_length=1_000_000)
    draft: bool = False
    maintainer_can_modify: bool = True


class PullUpdate(_In):
    title: str | None = Field(default=None, max_length=100_000)
    body: str | None = Field(default=None, max_length=1_000_000)
    state: Literal["open", "closed"] | None = None
    base: str | None = Field(default=None, max_length=1024)
    maintainer_can_modify: bool | None = None


class MergeRequest(_In):
    commit_title: str | None = Field(default=None, max_length=100_000)
    commit_message: str | None = Field(default=None, max_length=1_000_000)
    sha: str | None = Field(default=None, max_length=64)
    merge_method: Literal["merge", "squash", "rebase"] | None = None
    delete_branch: bool | None = None


# JSON ------------------------------------------------------------------------------------------


def _events(request: Request) -> EventBus | None:
    return getattr(request.app.state, "events", None)


def _user_json(user: User | None, settings: Settings) -> dict[str, Any] | None:
    if user is None:
        return None
    return SimpleUser.of(user, urls_for(settings)).model_dump(mode="json")


def _label_json(label: Any, api: str) -> dict[str, Any]:
    return {
        "id": label.id,
        "node_id": node_id("Label", label.id),
        "url": f"{api}/labels/{label.name}",
        "name": label.name,
        "color": label.color,
        "default": bool(label.is_default),
        "description": label.description or None,
    }


def _milestone_json(milestone: Any, api: str, html: str, settings: Settings) -> dict[str, Any]:
    return {
        "url": f"{api}/milestones/{milestone.number}",
        "html_url": f"{html}/milestone/{milestone.number}",
        "labels_url": f"{api}/milestones/{milestone.number}/labels",
        "id": milestone.id,
        "node_id": node_id("Milestone", milestone.id),
        "number": milestone.number,
        "state": milestone.state,
        "title": milestone.title,
        "description": milestone.description or None,
        "creator": _user_json(milestone.creator, settings),
        "open_issues": 0,
        "closed_issues": 0,
        "created_at": isoformat(milestone.created_at),
        "updated_at": isoformat(milestone.updated_at),
        "closed_at": isoformat(milestone.closed_at) if milestone.closed_at else None,
        "due_on": isoformat(milestone.due_on) if milestone.due_on else None,
    }


def _association(session: Session, repository: Repository, user: User | None) -> str:
    if user is None:
        return "NONE"
    if repository.owner_id == user.id:
        return "OWNER"
    held = repository_permission(session, Actor(user=user, method="system"), repository)
    if held is not None and held >= Permission.WRITE:
        return "COLLABORATOR"
    return "CONTRIBUTOR"


def _repo_json(
    session: Session, settings: Settings, actor: Actor, repository: Repository | None
) -> dict[str, Any] | None:
    if repository is None:
        return None
    permission = repos.permission_of(session, actor, repository)
    if permission is None:
        return None  # a private fork the caller may not see stays unseen
    return repository_json(repository, settings, permission if actor.user else None)


def _branch_json(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository | None,
    ref: str,
    sha: str,
) -> dict[str, Any]:
    owner = repository.owner if repository is not None else None
    return {
        "label": f"{owner.username if owner else 'unknown'}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": _user_json(owner, settings),
        "repo": _repo_json(session, settings, actor, repository),
    }


def pull_json(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    full: bool = True,
    mergeability: service.Mergeability | None = None,
) -> dict[str, Any]:
    """A pull request in GitHub's shape; `full` adds the merge state and counts (single GETs).
    `mergeability` is a fresh answer to show instead of the stored one (never written here)."""
    issue = pull.issue
    api = f"{settings.effective_base_url}/api/v3/repos/{repository.full_name}"
    html = f"{settings.effective_base_url}/{repository.full_name}"
    url = f"{api}/pulls/{pull.number}"
    html_url = f"{html}/pull/{pull.number}"
    head_repository = (
        session.get(Repository, pull.head_repository_id) if pull.head_repository_id else None
    )
    statuses_url = f"{api}/statuses/{pull.head_sha}"
    assignees = [_user_json(user, settings) for user in issue.assignees]
    requested = reviews.requested_reviewers(session, pull)
    known = mergeability or service.Mergeability.stored(pull)
    counts = known.counts or service.DiffCounts.stored(pull)
    data: dict[str, Any] = {
        "url": url,
        "id": pull.id,
        "node_id": node_id("PullRequest", pull.id),
        "html_url": html_url,
        "diff_url": f"{html_url}.diff",
        "patch_url": f"{html_url}.patch",
        "issue_url": f"{api}/issues/{pull.number}",
        "commits_url": f"{url}/commits",
        "review_comments_url": f"{url}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{pull.number}/comments",
        "statuses_url": statuses_url,
        "number": pull.number,
        "state": issue.state,
        "locked": bool(issue.locked),
        "title": issue.title,
        "user": _user_json(issue.author, settings),
        "body": issue.body or None,
        "labels": [_label_json(label, api) for label in issue.labels],
        "milestone": _milestone_json(issue.milestone, api, html, settings)
        if issue.milestone
        else None,
        "active_lock_reason": issue.active_lock_reason,
        "created_at": isoformat(issue.created_at),
        "updated_at": isoformat(issue.updated_at),
        "closed_at": isoformat(issue.closed_at) if issue.closed_at else None,
        "merged_at": isoformat(pull.merged_at) if pull.merged_at else None,
        "merge_commit_sha": pull.merge_commit_sha,
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "requested_reviewers": [_user_json(user, settings) for user in requested.users],
        "requested_teams": [
            TeamSimple.of(team, repository.owner, urls_for(settings)).model_dump(mode="json")
            for team in requested.teams
        ],
        "head": _branch_json(
            session, settings, actor, head_repository, pull.head_ref, pull.head_sha
        ),
        "base": _branch_json(session, settings, actor, repository, pull.base_ref, counts.base_sha),
        "_links": {
            "self": {"href": url},
            "html": {"href": html_url},
            "issue": {"href": f"{api}/issues/{pull.number}"},
            "comments": {"href": f"{api}/issues/{pull.number}/comments"},
            "review_comments": {"href": f"{url}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{url}/commits"},
            "statuses": {"href": statuses_url},
        },
        "author_association": _association(session, repository, issue.author),
        "auto_merge": {
            "enabled_by": _user_json(pull.auto_merge_enabled_by, settings),
            "merge_method": pull.auto_merge_method,
            "commit_title": pull.auto_merge_commit_title or "",
            "commit_message": pull.auto_merge_commit_message or "",
        }
        if pull.auto_merge_method
        else None,
        "draft": bool(pull.draft),
    }
    if full:
        data.update(
            {
                "merged": bool(pull.merged),
                "mergeable": known.mergeable,
                "rebaseable": known.mergeable,
                "mergeable_state": service.mergeable_state(session, settings, pull, known),
                "merged_by": _user_json(pull.merged_by, settings),
                "comments": issue.comments_count or 0,
                "review_comments": _review_comment_count(session, pull),
                "maintainer_can_modify": bool(pull.maintainer_can_modify),
                "commits": counts.commits,
                "additions": counts.additions,
                "deletions": counts.deletions,
                "changed_files": counts.changed_files,
            }
        )
    return data


def _review_comment_count(session: Session, pull: PullRequest) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ReviewComment)
            .where(ReviewComment.pull_request_id == pull.id)
        )
        or 0
    )


# Helpers ---------------------------------------------------------------------------------------


def _wants(request: Request, media_types: tuple[str, ...]) -> bool:
    accept = request.headers.get("accept", "").lower()
    return any(media_type in accept for media_type in media_types)


def _link(request: Request, response: Response, settings: Settings, page: Page, total: int) -> None:
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "per_page")}
    header = link_header(
        f"{settings.effective_base_url}{request.url.path}",
        params,
        page,
        total=total,
        has_next=page.offset + page.per_page < total,
    )
    if header:
        response.headers["Link"] = header


# Routes ----------------------------------------------------------------------------------------


@router.get(f"{REPO}/pulls")
def list_pulls(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    state: Annotated[Literal["open", "closed", "all"], Query()] = "open",
    head: Annotated[str | None, Query(max_length=1024)] = None,
    base: Annotated[str | None, Query(max_length=1024)] = None,
    sort: Annotated[Literal["created", "updated", "popularity", "long-running"], Query()] = (
        "created"
    ),
    direction: Annotated[Literal["asc", "desc"] | None, Query()] = None,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[dict[str, Any]]:
    chosen = Page.of(page, per_page)
    pulls, total = service.list_pulls(
        session,
        repository,
        chosen,
        state=state,
        head=head,
        base=base,
        sort=sort,
        direction=direction,
    )
    _link(request, response, settings, chosen, total)
    return [pull_json(session, settings, actor, repository, pull, full=False) for pull in pulls]


@router.post(f"{REPO}/pulls", status_code=201)
def create_pull(
    body: PullCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull = service.create_pull(
        session,
        settings,
        actor,
        repository,
        title=body.title,
        head=body.head,
        head_repo=body.head_repo,
        base=body.base,
        body=body.body,
        draft=body.draft,
        maintainer_can_modify=body.maintainer_can_modify,
        events=_events(request),
    )
    data = pull_json(session, settings, actor, repository, pull)
    response.headers["Location"] = data["url"]
    return data


@router.get(PULL, response_model=None)
def get_pull(
    number: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> dict[str, Any] | Response:
    pull = service.get_pull(session, repository, number)
    git = service.git_of(settings, repository)
    # Streamed from git as it writes it, however large (GitHub answers 406 above 300 files or
    # 20,000 lines; OpenCodeHub serves the whole diff without holding it in memory).
    if _wants(request, DIFF_TYPES):
        return StreamingResponse(
            service.stream_diff(settings, git, pull),
            media_type="application/vnd.github.diff; charset=utf-8",
        )
    if _wants(request, PATCH_TYPES):
        return StreamingResponse(
            service.stream_patch(settings, git, pull),
            media_type="application/vnd.github.patch; charset=utf-8",
        )
    # A read never writes the pull request: the push job stores mergeability; a stale answer is
    # computed here into the response only, so a GET never contends with the job for the row
    # (and the request's other writes, a token's last use, are kept).
    fresh = service.compute_mergeability(settings, pull)
    return pull_json(session, settings, actor, repository, pull, mergeability=fresh)


@router.patch(PULL)
def update_pull(
    number: int,
    body: PullUpdate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    repository: RepoRead,
) -> dict[str, Any]:
    pull = service.get_pull(session, repository, number)
    service.update_pull(
        session,
        settings,
        actor,
        repository,
        pull,
        title=body.title,
        body=body.body,
        state=body.state,
        base=body.base,
        maintainer_can_modify=body.maintainer_can_modify,
        events=_events(request),
    )
    service.refresh_mergeability(session, settings, pull)
    return pull_json(session, settings, actor, repository, pull)


@router.get(f"{PULL}/commits", response_model=list[git_schemas.RepoCommit])
def list_commits(
    number: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[git_schemas.RepoCommit]:
    pull = service.get_pull(session, repository, number)
    git = service.git_of(settings, repository)
    commits = service.pull_commits(git, pull)
    chosen = Page.of(page, per_page)
    chunk = commits[chosen.offset : chosen.offset + chosen.per_page]
    _link(request, response, settings, chosen, len(commits))
    urls = git_schemas.RepoUrls(settings.effective_base_url, repository.full_name)
    emails = {info.author.email for info in chunk} | {info.committer.email for info in chunk}
    users = users_by_email(session, emails)
    return [git_schemas.RepoCommit.of(info, urls, users) for info in chunk]


@router.get(f"{PULL}/files", response_model=list[git_schemas.DiffEntry])
def list_files(
    number: int,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    repository: RepoRead,
    page: PageNumber = None,
    per_page: PerPage = None,
) -> list[git_schemas.DiffEntry]:
    pull = service.get_pull(session, repository, number)
    git = service.git_of(settings, repository)
    chosen = Page.of(page, per_page)
    files, total = service.pull_files(git, pull, chosen)
    _link(request, response, settings, chosen, total)
    urls = git_schemas.RepoUrls(settings.effective_base_url, repository.full_name)
    return [git_schemas.DiffEntry.of(change, pull.head_sha, urls) for change in files]


@router.get(f"{PULL}/merge", status_code=204)
def is_merged(
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    repository: RepoRead,
) -> Response:
    pull = service.get_pull(session, repository, number)
    if not pull.merged:
        raise NotFound()
    return Response(status_code=204)


@router.put(f"{PULL}/merge")
def merge_pull(
    number: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: CurrentUser,
    repository: RepoRead,
    body: MergeRequest | None = None,
) -> JSONResponse:
    pull = service.get_pull(session, repository, number)
    body = body or MergeRequest()
    result = service.merge_pull(
        session,
        settings,
        actor,
        repository,
        pull,
        method=body.merge_method,
        sha=body.sha,
        commit_title=body.commit_title,
        commit_message=body.commit_message,
        delete_branch=body.delete_branch,
        events=_events(request),
    )
    return JSONResponse({"sha": result.sha, "merged": result.merged, "message": result.message})
