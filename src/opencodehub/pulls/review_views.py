"""Web endpoints for code review, commit statuses and branch protection settings.

- `/{owner}/{repo}/settings/branches`: branch protection rules (admins).
- `/{owner}/{repo}/commit/{sha}/statuses`: the commit statuses box (an htmx fragment the commit
  page loads; the pull request page includes `reviews/_statuses.html` directly).
- `/{owner}/{repo}/pull/{n}/review/...`: the "Files changed" tab's line comments (an htmx form
  per diff line), replies, thread resolution, suggestions, and submitting a review.

Routes are thin: each calls `pulls.reviews`, `pulls.protection` or `repos.statuses`, the same
services the REST API uses. htmx requests get the re-rendered thread as a fragment; plain form
posts are redirected back to the pull request.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission
from opencodehub.core.errors import Forbidden, NotFound, OCHError, ValidationFailed
from opencodehub.core.routing import APIRouter
from opencodehub.deps import CurrentActor, SessionDep, SettingsDep
from opencodehub.pulls import protection, reviews
from opencodehub.pulls.models import PullRequest, ReviewComment
from opencodehub.repos import browse, service, statuses, store
from opencodehub.repos.authz import can
from opencodehub.repos.models import ProtectedBranch, Repository
from opencodehub.web import flash
from opencodehub.web.auth import WebUser
from opencodehub.web.csrf import CsrfProtected
from opencodehub.web.markdown import render_markdown
from opencodehub.web.templating import field_errors, render, templates

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
OptionalInt = Annotated[int | None, Form()]
FormBool = Annotated[bool, Form()]
REVIEW_EVENTS = ("COMMENT", "APPROVE", "REQUEST_CHANGES")


def _base(repository: Repository) -> str:
    return f"/{quote(repository.owner.username)}/{quote(repository.name)}"


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _fragment(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    return render(request, template, status_code=status_code, **context)


# Commit statuses -------------------------------------------------------------------------------


@router.get("/{owner}/{repo}/commit/{sha}/statuses")
def commit_statuses(
    request: Request,
    owner: str,
    repo: str,
    sha: str,
    session: SessionDep,
    settings: SettingsDep,
    actor: CurrentActor,
) -> Response:
    repository = service.get_for(session, actor, owner, repo, Permission.READ)
    git_repo = store.open_repository(settings, repository.id)
    if not browse.SHORT_SHA_RE.match(sha) and not browse.is_valid_ref_name(sha):
        raise NotFound()
    commit = browse.resolve_commit(git_repo, sha)
    combined = statuses.combined_status(session, repository, str(commit.id))
    return _fragment(request, "reviews/statuses_fragment.html", combined=combined)


# Branch protection settings --------------------------------------------------------------------


def _admin_repository(session: Session, actor: Actor, owner: str, repo: str) -> Repository:
    return service.get_for(session, actor, owner, repo, Permission.ADMIN)


def _rule_form(session: Session, rule: ProtectedBranch | None) -> dict[str, Any]:
    if rule is None:
        return {"id": "", "pattern": "", "required_approving_review_count": 1, "contexts": ""}
    users, teams = protection.allowance_names(session, rule)
    return {
        "id": rule.id,
        "pattern": rule.pattern,
        "require_pull_request": rule.require_pull_request,
        "required_approving_review_count": rule.required_approving_review_count,
        "dismiss_stale_reviews": rule.dismiss_stale_reviews,
        "require_code_owner_reviews": rule.require_code_owner_reviews,
        "require_status_checks": rule.require_status_checks,
        "strict_status_checks": rule.strict_status_checks,
        "contexts": rule.required_contexts,
        "enforce_admins": rule.enforce_admins,
        "restrict_pushes": rule.restrict_pushes,
        "push_users": " ".join(u.username for u in users),
        "push_teams": " ".join(t.slug for t in teams),
        "allow_force_pushes": rule.allow_force_pushes,
        "allow_deletions": rule.allow_deletions,
    }


def _branches_page(
    request: Request,
    session: Session,
    repository: Repository,
    *,
    editing: ProtectedBranch | None = None,
    form: dict[str, Any] | None = None,
    error: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "reviews/branches.html",
        status_code=status_code,
        repo=repository,
        settings_tab="branches",
        rules=protection.rules_of(session, repository),
        form=form if form is not None else _rule_form(session, editing),
        error=error,
        errors=errors or {},
    )


@router.get("/{owner}/{repo}/settings/branches")
def branch_rules(
    request: Request,
    owner: str,
    repo: str,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    rule: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    repository = _admin_repository(session, actor, owner, repo)
    editing = protection.get_rule_by_id(session, repository, rule) if rule else None
    if rule and editing is None:
        raise NotFound()
    return _branches_page(request, session, repository, editing=editing)


@router.post("/{owner}/{repo}/settings/branches")
def branch_rule_save(
    request: Request,
    owner: str,
    repo: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    pattern: FormStr = "",
    rule_id: Annotated[str, Form()] = "",
    require_pull_request: FormBool = False,
    required_approving_review_count: Annotated[str, Form()] = "1",
    dismiss_stale_reviews: FormBool = False,
    require_code_owner_reviews: FormBool = False,
    require_status_checks: FormBool = False,
    strict_status_checks: FormBool = False,
    contexts: FormStr = "",
    enforce_admins: FormBool = False,
    restrict_pushes: FormBool = False,
    push_users: FormStr = "",
    push_teams: FormStr = "",
    allow_force_pushes: FormBool = False,
    allow_deletions: FormBool = False,
) -> Response:
    repository = _admin_repository(session, actor, owner, repo)
    form = {k: v for k, v in locals().items() if k not in ("request", "user", "actor", "session")}
    form["id"] = rule_id
    try:
        existing = None
        if rule_id:
            existing = (
                protection.get_rule_by_id(session, repository, int(rule_id))
                if rule_id.isdigit() and len(rule_id) < 19
                else None
            )
            if existing is None:
                raise NotFound()
        try:
            count = int(required_approving_review_count or "0")
        except ValueError:
            raise ValidationFailed.invalid(
                "ProtectedBranch", "required_approving_review_count", "must be a number"
            ) from None
        values = protection.RuleSettings(
            require_pull_request=require_pull_request,
            required_approving_review_count=count,
            dismiss_stale_reviews=dismiss_stale_reviews,
            require_code_owner_reviews=require_code_owner_reviews,
            require_status_checks=require_status_checks,
            strict_status_checks=strict_status_checks,
            required_contexts=contexts.splitlines()[:100],
            enforce_admins=enforce_admins,
            restrict_pushes=restrict_pushes,
            push_users=push_users.replace(",", " ").split()[:100],
            push_teams=push_teams.replace(",", " ").split()[:100],
            allow_force_pushes=allow_force_pushes,
            allow_deletions=allow_deletions,
        )
        saved = protection.save_rule(session, actor, repository, pattern, values, rule=existing)
    except ValidationFailed as exc:
        session.rollback()
        return _branches_page(
            request,
            session,
            repository,
            form=form,
            error=exc.describe(),
            errors=field_errors(exc),
            status_code=422,
        )
    return flash.redirect(
        request,
        f"{_base(repository)}/settings/branches",
        f"Branch protection rule for {saved.pattern} saved.",
    )


@router.post("/{owner}/{repo}/settings/branches/{rule_id}/delete")
def branch_rule_delete(
    request: Request,
    owner: str,
    repo: str,
    rule_id: int,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
) -> Response:
    repository = _admin_repository(session, actor, owner, repo)
    rule = protection.get_rule_by_id(session, repository, rule_id)
    if rule is None:
        raise NotFound()
    pattern = rule.pattern
    protection.delete_rule(session, actor, repository, rule)
    return flash.redirect(
        request, f"{_base(repository)}/settings/branches", f"Rule for {pattern} deleted."
    )


# Review on the "Files changed" tab ------------------------------------------------------------


def _pull(
    session: Session, actor: Actor, owner: str, repo: str, number: int
) -> tuple[Repository, PullRequest]:
    repository = service.get_for(session, actor, owner, repo, Permission.READ)
    return repository, reviews.get_pull_request(session, repository, number)


def review_context(
    session: Session, actor: Actor, repository: Repository, pull_request: PullRequest
) -> dict[str, Any]:
    """What the review includes need (see docs/reviews-and-protection.md): the threads by
    path and line, the decision, the viewer's pending review and rights."""
    all_threads = reviews.threads(session, actor, pull_request)
    by_line: dict[tuple[str, str, int], list[reviews.Thread]] = {}
    outdated: list[reviews.Thread] = []
    for thread in all_threads:
        root = thread.root
        if root.outdated or root.line is None:
            outdated.append(thread)
        else:
            by_line.setdefault((root.path, root.side.value, root.line), []).append(thread)
    pending = reviews.pending_review(session, pull_request, actor.user) if actor.user else None
    base = _base(repository)
    return {
        "review_base": f"{base}/pull/{pull_request.number}/review",
        "review_threads": all_threads,
        "threads_by_line": by_line,
        "outdated_threads": outdated,
        "review_decision": reviews.review_decision(session, pull_request),
        "pending_review": pending,
        "can_resolve": actor.user is not None
        and (
            actor.user_id == reviews.pr_author_id(pull_request)
            or can(session, actor, repository, Permission.WRITE)
        ),
        "is_author": actor.user_id == reviews.pr_author_id(pull_request),
        "render_markdown": render_markdown,
        "suggestion_of": reviews.suggestion_of,
    }


def _thread_response(
    request: Request,
    session: Session,
    actor: Actor,
    repository: Repository,
    pull_request: PullRequest,
    comment: ReviewComment,
) -> Response:
    if not _is_htmx(request):
        return flash.redirect(
            request, f"{_base(repository)}/pull/{pull_request.number}/files", "Comment saved."
        )
    root = reviews.thread_root(session, comment)
    context = review_context(session, actor, repository, pull_request)
    thread = next(t for t in context["review_threads"] if t.root.id == root.id)
    return _fragment(request, "reviews/thread_fragment.html", thread=thread, **context)


def _error_fragment(request: Request, message: str, status_code: int) -> Response:
    html = templates.get_template("reviews/_error.html").render(message=message)
    return HTMLResponse(html, status_code=status_code)


@router.get("/{owner}/{repo}/pull/{number}/review/comment-form")
def comment_form(
    request: Request,
    owner: str,
    repo: str,
    number: int,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    path: Annotated[str, Query(max_length=4096)],
    line: Annotated[int, Query(ge=1, le=10_000_000)],
    side: Annotated[str, Query(pattern="^(LEFT|RIGHT)$")] = "RIGHT",
) -> Response:
    repository, pull_request = _pull(session, actor, owner, repo, number)
    return _fragment(
        request,
        "reviews/comment_form_fragment.html",
        path=path,
        line=line,
        side=side,
        **review_context(session, actor, repository, pull_request),
    )


@router.post("/{owner}/{repo}/pull/{number}/review/comments")
def add_line_comment(
    request: Request,
    owner: str,
    repo: str,
    number: int,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    path: FormStr,
    line: Annotated[int, Form(ge=1, le=10_000_000)],
    body: FormStr,
    side: FormStr = "RIGHT",
    start_line: OptionalInt = None,
    mode: FormStr = "single",
) -> Response:
    """`mode=single` posts at once (a COMMENTED review); `mode=review` adds the comment to the
    viewer's pending review, started if needed."""
    repository, pull_request = _pull(session, actor, owner, repo, number)
    try:
        if mode == "review":
            comment = reviews.add_pending_comment(
                session,
                settings,
                actor,
                pull_request,
                reviews.CommentInput(
                    body=body, path=path, line=line, side=side, start_line=start_line
                ),
            )
        else:
            comment = reviews.create_comment(
                session,
                settings,
                actor,
                pull_request,
                body=body,
                path=path,
                line=line,
                side=side,
                start_line=start_line,
            )
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        text = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        return _error_fragment(request, text, exc.status_code)
    return _thread_response(request, session, actor, repository, pull_request, comment)


def _comment_of(
    session: Session, actor: Actor, repository: Repository, pull_request: PullRequest, cid: int
) -> ReviewComment:
    comment = reviews.get_comment(session, actor, repository, cid)
    if comment.pull_request_id != pull_request.id:
        raise NotFound()
    return comment


@router.post("/{owner}/{repo}/pull/{number}/review/comments/{comment_id}/reply")
def reply_to_thread(
    request: Request,
    owner: str,
    repo: str,
    number: int,
    comment_id: int,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    body: FormStr,
) -> Response:
    repository, pull_request = _pull(session, actor, owner, repo, number)
    parent = _comment_of(session, actor, repository, pull_request, comment_id)
    try:
        comment = reviews.reply(session, actor, pull_request, parent, body=body)
    except ValidationFailed as exc:
        session.rollback()
        return _error_fragment(request, exc.describe(), 422)
    return _thread_response(request, session, actor, repository, pull_request, comment)


@router.post("/{owner}/{repo}/pull/{number}/review/comments/{comment_id}/{action}")
def resolve_thread(
    request: Request,
    owner: str,
    repo: str,
    number: int,
    comment_id: int,
    action: str,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    if action not in ("resolve", "unresolve", "apply-suggestion"):
        raise NotFound()
    repository, pull_request = _pull(session, actor, owner, repo, number)
    comment = _comment_of(session, actor, repository, pull_request, comment_id)
    if action == "apply-suggestion":
        try:
            sha = reviews.apply_suggestion(
                session,
                settings,
                actor,
                pull_request,
                comment,
                events=getattr(request.app.state, "events", None),
            )
        except (ValidationFailed, Forbidden) as exc:
            session.rollback()
            text = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
            return _error_fragment(request, text, exc.status_code)
        if not _is_htmx(request):
            return flash.redirect(
                request,
                f"{_base(repository)}/pull/{pull_request.number}/files",
                f"Suggestion committed as {sha[:7]}.",
            )
    else:
        reviews.set_thread_resolved(session, actor, pull_request, comment, action == "resolve")
    return _thread_response(request, session, actor, repository, pull_request, comment)


@router.post("/{owner}/{repo}/pull/{number}/review/submit")
def submit_review(
    request: Request,
    owner: str,
    repo: str,
    number: int,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    event: FormStr = "COMMENT",
    body: FormStr = "",
) -> Response:
    """Submit the viewer's pending review (or a review without line comments) with a verdict."""
    repository, pull_request = _pull(session, actor, owner, repo, number)
    target = f"{_base(repository)}/pull/{pull_request.number}"
    if event not in REVIEW_EVENTS:
        raise NotFound()
    try:
        pending = reviews.pending_review(session, pull_request, user)
        if pending is not None:
            reviews.submit_review(session, actor, pull_request, pending, event=event, body=body)
        else:
            reviews.create_review(session, settings, actor, pull_request, body=body, event=event)
    except (ValidationFailed, Forbidden) as exc:
        session.rollback()
        message = exc.describe() if isinstance(exc, ValidationFailed) else exc.message
        if isinstance(exc, ValidationFailed) and exc.errors and exc.errors[0].message:
            message = exc.errors[0].message
        return flash.redirect(request, f"{target}/files", message)
    except OCHError:
        session.rollback()
        raise
    words = {"APPROVE": "approved", "REQUEST_CHANGES": "requested changes", "COMMENT": "reviewed"}
    return flash.redirect(request, target, f"You {words[event]} this pull request.")


def _split_reviewers(text: str) -> tuple[list[str], list[str]]:
    """`alice, @bob acme/core` → users ["alice", "bob"], teams ["core"]."""
    users: list[str] = []
    teams: list[str] = []
    for name in text.replace(",", " ").split()[: reviews.MAX_REVIEWERS + 1]:
        name = name.lstrip("@")
        if "/" in name:
            teams.append(name.rsplit("/", 1)[1])
        elif name:
            users.append(name)
    return users, teams


@router.post("/{owner}/{repo}/pull/{number}/review/reviewers")
def request_reviewers(
    request: Request,
    owner: str,
    repo: str,
    number: int,
    _: CsrfProtected,
    user: WebUser,
    actor: CurrentActor,
    session: SessionDep,
    reviewers: Annotated[str, Form(max_length=1000)] = "",
    remove: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Request reviews from the users and teams named in `reviewers`, or withdraw the request
    named in `remove`."""
    repository, pull_request = _pull(session, actor, owner, repo, number)
    target = f"{_base(repository)}/pull/{pull_request.number}"
    try:
        if remove:
            users, teams = _split_reviewers(remove)
            reviews.remove_requested_reviewers(
                session, actor, pull_request, reviewers=users, team_reviewers=teams
            )
            return flash.redirect(request, target, "Review request removed.")
        users, teams = _split_reviewers(reviewers)
        reviews.request_reviewers(
            session, actor, pull_request, reviewers=users, team_reviewers=teams
        )
    except ValidationFailed as exc:
        session.rollback()
        message = exc.errors[0].message if exc.errors and exc.errors[0].message else exc.describe()
        return flash.redirect(request, target, message, "error")
    return flash.redirect(request, target, "Review requested.")
