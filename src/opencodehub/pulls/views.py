"""Web pages for pull requests and forks: the list, the new pull request form, the conversation,
commits and files tabs (files render the first page at once and load the rest with htmx), the
merge box, and the fork and sync buttons of a repository's home."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.config import Settings
from opencodehub.core.errors import OCHError, ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.issues import service as issues
from opencodehub.pulls import reviews, service
from opencodehub.pulls.models import PullRequest
from opencodehub.pulls.review_views import review_context
from opencodehub.repos import browse, diffview, forks, statuses
from opencodehub.repos.authz import can
from opencodehub.repos.deps import RepoPageAdmin, RepoPageRead, RepoView
from opencodehub.repos.views import _diff_mode, _page, url_path
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.markdown import render_markdown
from opencodehub.web.templating import render

router = APIRouter(include_in_schema=False)

FILES_PER_PAGE = 50  # rendered at once; the rest arrive page by page
PULLS_PER_PAGE = 25
REPO = "/{owner}/{repo}"
PULL = REPO + "/pull/{number}"

TextField = Annotated[str, Form(max_length=1_000_000)]


def _events(request: Request) -> Any:
    return getattr(request.app.state, "events", None)


def _pull_context(
    session: Session, settings: Settings, actor: Actor, view: RepoView, pull: PullRequest
) -> dict[str, Any]:
    # A page view answers with a fresh mergeability but never stores it: the push job does,
    # and a read that wrote the row would contend with it for the lock.
    mergeability = service.compute_mergeability(settings, pull)
    repository = view.repository
    return {
        "pull": pull,
        "issue": pull.issue,
        "counts": mergeability.counts or service.DiffCounts.stored(pull),
        "conflicting_files": mergeability.conflicting_files,
        "head_label": service.head_label(session, pull),
        "pull_base": f"{view.base}/pull/{pull.number}",
        "state": service.mergeable_state(session, settings, pull, mergeability),
        "settings_row": service.merge_settings(session, repository),
        "can_merge": can(session, actor, repository, Permission.WRITE)
        and not repository.is_archived,
        "can_edit": actor.user is not None
        and issues.may_edit_issue(session, actor, repository, pull.issue),
        "head_exists": service.live_head_sha(settings, pull) is not None,
    }


def _review_context(
    session: Session, actor: Actor, view: RepoView, pull: PullRequest
) -> dict[str, Any]:
    """The review includes' context, and whether the viewer may comment on lines."""
    context = review_context(session, actor, view.repository, pull)
    context["review_enabled"] = actor.user is not None and (
        not pull.issue.locked or can(session, actor, view.repository, Permission.WRITE)
    )
    return context


@router.get(f"{REPO}/pulls")
def list_page(
    request: Request,
    session: SessionDep,
    view: RepoPageRead,
    state: Annotated[str, Query(max_length=10)] = "open",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    state = state if state in ("open", "closed", "all") else "open"
    pulls, total = service.list_pulls(
        session, view.repository, Page(page, PULLS_PER_PAGE), state=state
    )
    return _page(
        request,
        "pulls/list.html",
        view,
        "pulls",
        page_title=f"Pull requests · {view.repository.full_name}",
        pulls=pulls,
        total=total,
        state=state,
        page_number=page,
        has_next=page * PULLS_PER_PAGE < total,
    )


@router.get(f"{REPO}/pull/new")
def new_form(
    request: Request,
    settings: SettingsDep,
    user: WebUser,
    view: RepoPageRead,
    base: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
    head: Annotated[str | None, Query(max_length=browse.MAX_REF_LENGTH)] = None,
) -> Response:
    template = issues.pull_request_template(settings, view.repository) or ""
    return _page(
        request,
        "pulls/new.html",
        view,
        "pulls",
        page_title="Open a pull request",
        base_ref=base or view.repository.default_branch,
        head_ref=head or "",
        title="",
        body=template,
        error=None,
    )


@router.post(f"{REPO}/pulls")
def create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    base: Annotated[str, Form(max_length=browse.MAX_REF_LENGTH)],
    head: Annotated[str, Form(max_length=browse.MAX_REF_LENGTH)],
    title: Annotated[str, Form(max_length=1000)] = "",
    body: TextField = "",
    draft: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    try:
        with session.begin_nested():
            pull = service.create_pull(
                session,
                settings,
                actor,
                view.repository,
                title=title,
                head=head,
                base=base,
                body=body,
                draft=bool(draft),
                events=_events(request),
            )
    except ValidationFailed as exc:
        response = _page(
            request,
            "pulls/new.html",
            view,
            "pulls",
            page_title="Open a pull request",
            base_ref=base,
            head_ref=head,
            title=title,
            body=body,
            error=exc.describe(),
        )
        response.status_code = 422
        return response
    return flash.redirect(request, f"{view.base}/pull/{pull.number}")


# Before the conversation route, whose `{number}` would otherwise take "1.diff".
@router.get(REPO + "/pull/{number:int}.diff")
def raw_diff(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    view: RepoPageRead,
) -> Response:
    """The pull request's `diff_url`: the unified diff as plain text, streamed from git."""
    pull = service.get_pull(session, view.repository, number)
    return StreamingResponse(
        service.stream_diff(settings, view.git, pull), media_type="text/plain; charset=utf-8"
    )


@router.get(REPO + "/pull/{number:int}.patch")
def raw_patch(
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    view: RepoPageRead,
) -> Response:
    """The pull request's `patch_url`: its commits as `git format-patch` mails, streamed."""
    pull = service.get_pull(session, view.repository, number)
    return StreamingResponse(
        service.stream_patch(settings, view.git, pull), media_type="text/plain; charset=utf-8"
    )


@router.get(PULL)
def conversation(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    view: RepoPageRead,
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    comments = issues.list_comments(session, view.repository, pull.issue, Page(1, 100))[:100]
    context = _review_context(session, actor, view, pull)
    return _page(
        request,
        "pulls/conversation.html",
        view,
        "pulls",
        page_title=f"{pull.issue.title} · Pull Request #{pull.number}",
        subtab="conversation",
        body_html=render_markdown(pull.issue.body or ""),
        timeline=_timeline(session, actor, pull, comments, context["review_threads"]),
        requested=reviews.requested_reviewers(session, pull),
        can_request=actor.user is not None
        and (
            actor.user_id == reviews.pr_author_id(pull)
            or can(session, actor, view.repository, Permission.TRIAGE)
        ),
        combined=statuses.combined_status(session, view.repository, pull.head_sha),
        **_pull_context(session, settings, actor, view, pull),
        **context,
    )


def _timeline(
    session: Session,
    actor: Actor,
    pull: PullRequest,
    comments: list[Any],
    threads: list[reviews.Thread],
) -> list[dict[str, Any]]:
    """Comments, submitted reviews (each with the threads it started) and head pushes, oldest
    first."""
    items: list[dict[str, Any]] = [
        {
            "kind": "comment",
            "at": comment.created_at,
            "comment": comment,
            "html": render_markdown(comment.body),
        }
        for comment in comments
    ]
    by_review: dict[int, list[reviews.Thread]] = {}
    for thread in threads:
        by_review.setdefault(thread.root.review_id, []).append(thread)
    for review in reviews.list_reviews(session, actor, pull):
        if review.submitted_at is None:
            continue  # a pending review shows on the files tab only
        items.append(
            {
                "kind": "review",
                "at": review.submitted_at,
                "review": review,
                "html": render_markdown(review.body) if review.body else None,
                "threads": by_review.get(review.id, []),
            }
        )
    for move in service.head_pushes(session, pull):
        items.append({"kind": "move", "at": move.created_at, "move": move})
    items.sort(key=lambda item: service.as_utc(item["at"]))
    return items


@router.get(f"{PULL}/commits")
def commits_tab(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    view: RepoPageRead,
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    return _page(
        request,
        "pulls/commits.html",
        view,
        "pulls",
        page_title=f"Commits · Pull Request #{pull.number}",
        subtab="commits",
        commits=service.pull_commits(view.git, pull),
        **_pull_context(session, settings, actor, view, pull),
    )


def _file_page(
    view: RepoView, pull: PullRequest, start: int, count: int
) -> tuple[list[diffview.FileDiff], int]:
    old, new = service.pull_trees(view.git, pull)
    diff = diffview.tree_diff(view.git, old, new)
    total = len(diff)
    files = [
        diffview._render_file(diff, index, diffview.MAX_FILE_LINES)
        for index in range(start, min(start + count, total))
    ]
    return files, total


@router.get(f"{PULL}/files")
def files_tab(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    view: RepoPageRead,
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    files, total = _file_page(view, pull, 0, FILES_PER_PAGE)
    return _page(
        request,
        "pulls/files.html",
        view,
        "pulls",
        page_title=f"Files changed · Pull Request #{pull.number}",
        subtab="files",
        files=files,
        total_files=total,
        next_start=FILES_PER_PAGE if total > FILES_PER_PAGE else None,
        viewed=service.viewed_paths(session, actor, pull),
        diff_mode=_diff_mode(request),
        **_pull_context(session, settings, actor, view, pull),
        **_review_context(session, actor, view, pull),
    )


@router.get(f"{PULL}/files/page")
def files_page(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    view: RepoPageRead,
    start: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """One more page of files (an htmx partial that ends with the trigger for the next)."""
    pull = service.get_pull(session, view.repository, number)
    files, total = _file_page(view, pull, start, FILES_PER_PAGE)
    following = start + FILES_PER_PAGE
    return render(
        request,
        "pulls/_files_page.html",
        files=files,
        pull_base=f"{view.base}/pull/{pull.number}",
        next_start=following if following < total else None,
        viewed=service.viewed_paths(session, actor, pull),
        diff_mode=_diff_mode(request),
        url_path=url_path,
        **_review_context(session, actor, view, pull),
    )


@router.post(f"{PULL}/viewed")
def mark_viewed(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    path: Annotated[str, Form(max_length=browse.MAX_PATH_LENGTH)],
    viewed: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    service.set_viewed(session, settings, actor, view.repository, pull, path, bool(viewed))
    if request.headers.get("hx-request"):
        return Response(status_code=204)
    return flash.redirect(request, f"{view.base}/pull/{pull.number}/files")


@router.post(f"{PULL}/comment")
def comment(
    request: Request,
    number: int,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    body: TextField,
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    issues.add_comment(session, actor, view.repository, pull.issue, body)
    return flash.redirect(request, f"{view.base}/pull/{pull.number}")


@router.post(f"{PULL}/merge")
def merge(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    merge_method: Annotated[str, Form(max_length=10)] = "merge",
    sha: Annotated[str | None, Form(max_length=64)] = None,
    commit_title: Annotated[str | None, Form(max_length=1000)] = None,
    commit_message: TextField | None = None,
    delete_branch: Annotated[str | None, Form(max_length=10)] = None,
    auto: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    target = f"{view.base}/pull/{pull.number}"
    try:
        with session.begin_nested():
            if auto:
                service.enable_auto_merge(
                    session,
                    settings,
                    actor,
                    view.repository,
                    pull,
                    method=merge_method,
                    commit_title=commit_title or None,
                    commit_message=commit_message or None,
                )
                return flash.redirect(request, target, "Auto-merge enabled.")
            service.merge_pull(
                session,
                settings,
                actor,
                view.repository,
                pull,
                method=merge_method,
                sha=sha or None,
                commit_title=commit_title or None,
                commit_message=commit_message or None,
                delete_branch=True if delete_branch else None,
                events=_events(request),
            )
    except OCHError as exc:
        detail = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return flash.redirect(request, target, detail, "error")
    return flash.redirect(request, target, "Pull request successfully merged.")


@router.post(f"{PULL}/state")
def change_state(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    action: Annotated[str, Form(max_length=20)],
) -> Response:
    """Close, reopen, ready for review, convert to draft, cancel auto-merge, delete branch."""
    pull = service.get_pull(session, view.repository, number)
    repository = view.repository
    events = _events(request)
    target = f"{view.base}/pull/{pull.number}"
    try:
        with session.begin_nested():
            if action == "close":
                service.update_pull(
                    session, settings, actor, repository, pull, state="closed", events=events
                )
            elif action == "reopen":
                service.update_pull(
                    session, settings, actor, repository, pull, state="open", events=events
                )
            elif action in ("ready", "draft"):
                service.set_draft(
                    session, actor, repository, pull, action == "draft", events=events
                )
            elif action == "cancel-auto-merge":
                service.disable_auto_merge(session, actor, repository, pull)
            elif action == "delete-branch":
                service.delete_head_branch(
                    session, settings, actor, repository, pull, events=events
                )
            else:
                return flash.redirect(request, target, "Unknown action.", "error")
    except OCHError as exc:
        detail = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return flash.redirect(request, target, detail, "error")
    return flash.redirect(request, target)


@router.post(f"{PULL}/base")
def change_base(
    request: Request,
    number: int,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    base: Annotated[str, Form(max_length=browse.MAX_REF_LENGTH)],
) -> Response:
    pull = service.get_pull(session, view.repository, number)
    target = f"{view.base}/pull/{pull.number}"
    try:
        with session.begin_nested():
            service.update_pull(
                session, settings, actor, view.repository, pull, base=base, events=_events(request)
            )
    except OCHError as exc:
        detail = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return flash.redirect(request, target, detail, "error")
    return flash.redirect(request, target, f"The base branch is now {base}.")


# Forks -----------------------------------------------------------------------------------------


@router.post(f"{REPO}/fork")
def fork(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
) -> Response:
    forks.remember_settings(settings)
    try:
        with session.begin_nested():
            created = forks.fork_repository(session, settings, actor, view.repository)
    except OCHError as exc:
        detail = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return flash.redirect(request, view.base, detail, "error")
    path = f"/{quote(created.owner.username)}/{quote(created.name)}"
    return flash.redirect(request, path, f"Forked from {view.repository.full_name}.")


@router.post(f"{REPO}/sync-fork")
def sync_fork(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageRead,
    branch: Annotated[str, Form(max_length=browse.MAX_REF_LENGTH)],
) -> Response:
    try:
        with session.begin_nested():
            result = forks.sync_branch(
                session, settings, actor, view.repository, branch, events=_events(request)
            )
    except OCHError as exc:
        detail = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return flash.redirect(request, view.base, detail, "error")
    return flash.redirect(request, view.base, result.message)


# Merge settings --------------------------------------------------------------------------------


@router.get(f"{REPO}/settings/merges")
def merge_settings_form(
    request: Request,
    session: SessionDep,
    user: WebUser,
    view: RepoPageAdmin,
) -> Response:
    return _page(
        request,
        "pulls/merge_settings.html",
        view,
        "code",
        page_title="Merge settings",
        settings_row=service.merge_settings(session, view.repository),
    )


@router.post(f"{REPO}/settings/merges")
def save_merge_settings(
    request: Request,
    session: SessionDep,
    actor: CurrentActor,
    user: WebUser,
    _: CsrfProtected,
    view: RepoPageAdmin,
    allow_merge_commit: Annotated[str | None, Form(max_length=10)] = None,
    allow_squash_merge: Annotated[str | None, Form(max_length=10)] = None,
    allow_rebase_merge: Annotated[str | None, Form(max_length=10)] = None,
    allow_auto_merge: Annotated[str | None, Form(max_length=10)] = None,
    delete_branch_on_merge: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    target = f"{view.base}/settings/merges"
    try:
        with session.begin_nested():
            service.update_merge_settings(
                session,
                actor,
                view.repository,
                allow_merge_commit=bool(allow_merge_commit),
                allow_squash_merge=bool(allow_squash_merge),
                allow_rebase_merge=bool(allow_rebase_merge),
                allow_auto_merge=bool(allow_auto_merge),
                delete_branch_on_merge=bool(delete_branch_on_merge),
            )
    except ValidationFailed as exc:
        return flash.redirect(request, target, exc.describe(), "error")
    return flash.redirect(request, target, "Merge settings saved.")
