"""Code review: reviews, line comments and their threads, suggestions, requested reviewers,
and a pull request's review decision.

Line comments are placed on the pull request's diff (merge base to head) by `line` and `side`
(`LEFT`: the base's lines, `RIGHT`: the head's), or by the legacy `position` (lines below the
file's first hunk header). A line outside the diff is refused (422). When the head moves,
`refresh_comments` keeps each comment whose lines still read the same on the new head and marks
the others outdated; `dismiss_stale_approvals` dismisses approvals of an older head where the
base branch's rule asks for it.

A suggestion (a ```suggestion block in a comment on the head's lines) is applied as a commit on
the head branch through `repos.contents`, so it passes the same branch protection and leaves the
same push record as any other change; it is refused when the lines no longer read as they did.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pygit2
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, object_session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, Team, TeamMember, User
from opencodehub.config import Settings
from opencodehub.core.errors import FieldError, Forbidden, NotFound, ValidationFailed
from opencodehub.core.events import EventBus
from opencodehub.core.logging import get_logger
from opencodehub.core.time import utcnow
from opencodehub.pulls import protection
from opencodehub.pulls.models import (
    PullRequest,
    PullReview,
    ReviewComment,
    ReviewRequest,
    ReviewState,
    Side,
)
from opencodehub.repos import store
from opencodehub.repos.authz import authorize, effective_permission, repository_permission
from opencodehub.repos.models import Repository

log = get_logger("opencodehub.reviews")

EVENTS = {
    "APPROVE": ReviewState.APPROVED,
    "REQUEST_CHANGES": ReviewState.CHANGES_REQUESTED,
    "COMMENT": ReviewState.COMMENTED,
}
MAX_BODY = 65_536
MAX_REVIEWERS = 15  # GitHub's cap of requested reviewers per call
SUGGESTION_RE = re.compile(r"^```suggestion[^\n]*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
DIFF_CONTEXT_LINES = 3


# Pull request accessors --------------------------------------------------------------------------


def _session_of(obj: Any) -> Session:
    session = object_session(obj)
    if session is None:
        raise RuntimeError("the pull request is not attached to a session")
    return session


def pr_base_repository(pull_request: PullRequest) -> Repository:
    repository = _session_of(pull_request).get(Repository, pull_request.repository_id)
    assert repository is not None
    return repository


def pr_base_ref(pull_request: PullRequest) -> str:
    return pull_request.base_ref


def pr_head_sha(pull_request: PullRequest) -> str:
    return pull_request.head_sha


def pr_author_id(pull_request: PullRequest) -> int | None:
    return pull_request.issue.author_id


def get_pull_request(session: Session, repository: Repository, number: int) -> PullRequest:
    pull_request = session.scalar(
        select(PullRequest).where(
            PullRequest.repository_id == repository.id, PullRequest.number == number
        )
    )
    if pull_request is None:
        raise NotFound()
    return pull_request


def _signed_in(actor: Actor) -> User:
    if actor.user is None:
        raise NotFound()
    return actor.user


def _invalid(resource: str, field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError(resource, field_name, "custom", message)], message)


def _clean_body(body: str | None, resource: str) -> str:
    body = body or ""
    if "\x00" in body or len(body) > MAX_BODY:
        raise _invalid(resource, "body", "body is too long or contains a NUL character")
    return body


def _can_write(session: Session, actor: Actor, repository: Repository) -> bool:
    permission = effective_permission(session, actor, repository)
    return permission is not None and permission >= Permission.WRITE


# The diff a comment is placed on ---------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    position: int  # 0 for the file's first hunk header; each later header has a position
    origin: str  # " ", "+", "-", "@" (hunk header)
    old_lineno: int | None
    new_lineno: int | None
    text: str
    hunk: int


@dataclass
class FileDiff:
    path: str
    lines: list[DiffLine] = field(default_factory=list)

    def find(self, side: Side, line: int) -> DiffLine | None:
        for entry in self.lines:
            if entry.origin == "@":
                continue
            if side == Side.RIGHT and entry.origin in " +" and entry.new_lineno == line:
                return entry
            if side == Side.LEFT and entry.origin in " -" and entry.old_lineno == line:
                return entry
        return None

    def at_position(self, position: int) -> DiffLine | None:
        for entry in self.lines:
            if entry.position == position and entry.origin != "@":
                return entry
        return None

    def hunk_text(self, upto: DiffLine) -> str:
        """GitHub's `diff_hunk`: the hunk's header and its lines down to the commented one."""
        out: list[str] = []
        for entry in self.lines:
            if entry.hunk != upto.hunk:
                continue
            out.append(entry.text if entry.origin == "@" else f"{entry.origin}{entry.text}")
            if entry.position == upto.position:
                break
        return "\n".join(out)

    def text_between(self, side: Side, start: int, end: int) -> str | None:
        """The text of lines start..end of one side, when all are in the diff."""
        texts: list[str] = []
        for number in range(start, end + 1):
            entry = self.find(side, number)
            if entry is None:
                return None
            texts.append(entry.text)
        return "\n".join(texts)


def git_for(settings: Settings, pull_request: PullRequest) -> pygit2.Repository:
    """The base repository's git data, which holds the head's commits (refs/pull/N/head)."""
    return store.open_repository(settings, pull_request.repository_id)


def _merge_base(
    git_repo: pygit2.Repository, pull_request: PullRequest, head_sha: str
) -> str | None:
    try:
        base = git_repo.merge_base(pull_request.base_sha, head_sha)
    except (KeyError, ValueError, pygit2.GitError):
        base = None
    if base is None and pull_request.merge_base_sha:
        return pull_request.merge_base_sha
    return str(base) if base is not None else None


def file_diff(
    git_repo: pygit2.Repository, pull_request: PullRequest, head_sha: str, path: str
) -> FileDiff | None:
    """The pull request's diff of one file at `head_sha` (None when the file is unchanged)."""
    try:
        head = git_repo[head_sha].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    base_sha = _merge_base(git_repo, pull_request, head_sha)
    base_tree = git_repo[base_sha].peel(pygit2.Commit).tree if base_sha else None
    if base_tree is not None:
        diff = git_repo.diff(base_tree, head.tree, context_lines=DIFF_CONTEXT_LINES)
    else:
        diff = head.tree.diff_to_tree(swap=True, context_lines=DIFF_CONTEXT_LINES)
    for patch in diff:
        if patch is None or patch.delta.is_binary:
            continue
        if path not in (patch.delta.new_file.path, patch.delta.old_file.path):
            continue
        result = FileDiff(path)
        position = -1
        for number, hunk in enumerate(patch.hunks):
            position += 1
            result.lines.append(
                DiffLine(position, "@", None, None, hunk.header.rstrip("\n"), number)
            )
            for line in hunk.lines:
                if line.origin not in " +-":
                    continue  # "no newline at end of file" markers
                position += 1
                result.lines.append(
                    DiffLine(
                        position,
                        line.origin,
                        line.old_lineno if line.old_lineno > 0 else None,
                        line.new_lineno if line.new_lineno > 0 else None,
                        line.content.rstrip("\n").rstrip("\r"),
                        number,
                    )
                )
        return result
    return None


@dataclass(frozen=True)
class Placement:
    path: str
    side: Side
    line: int
    start_line: int | None
    start_side: Side | None
    position: int
    diff_hunk: str
    line_text: str


def place_comment(
    git_repo: pygit2.Repository,
    pull_request: PullRequest,
    commit_id: str,
    *,
    path: str | None,
    line: int | None = None,
    side: str | None = None,
    start_line: int | None = None,
    start_side: str | None = None,
    position: int | None = None,
) -> Placement:
    """Where a new comment goes in the diff at `commit_id`; 422 unless its lines are in it."""
    resource = "PullRequestReviewComment"
    if not path or "\x00" in path or len(path) > 4096:
        raise _invalid(resource, "path", "path is missing or invalid")
    diff = file_diff(git_repo, pull_request, commit_id, path)
    if diff is None:
        raise _invalid(resource, "path", "path could not be resolved")
    if line is None and position is not None:
        entry = diff.at_position(position)
        if entry is None:
            raise _invalid(resource, "position", "position is not part of the diff")
        the_side = Side.LEFT if entry.origin == "-" else Side.RIGHT
        line = entry.old_lineno if the_side == Side.LEFT else entry.new_lineno
        assert line is not None
    elif line is not None:
        try:
            the_side = Side((side or "RIGHT").upper())
        except ValueError:
            raise _invalid(resource, "side", "side must be LEFT or RIGHT") from None
        entry = diff.find(the_side, line)
        if entry is None:
            raise _invalid(resource, "line", "line must be part of the diff")
    else:
        raise _invalid(resource, "line", "line is required")
    first_side: Side | None = None
    if start_line is not None:
        try:
            first_side = Side((start_side or the_side.value).upper())
        except ValueError:
            raise _invalid(resource, "start_side", "start_side must be LEFT or RIGHT") from None
        if start_line >= line:
            raise _invalid(resource, "start_line", "start_line must precede line")
        first = diff.find(first_side, start_line)
        if first is None or first.hunk != entry.hunk:
            raise _invalid(resource, "start_line", "start_line must be part of the same hunk")
    text = (
        diff.text_between(the_side, start_line or line, line)
        if first_side
        in (
            None,
            the_side,
        )
        else entry.text
    )
    return Placement(
        path=path,
        side=the_side,
        line=line,
        start_line=start_line,
        start_side=first_side,
        position=entry.position,
        diff_hunk=diff.hunk_text(entry),
        line_text=text if text is not None else entry.text,
    )


# Reviews ---------------------------------------------------------------------------------------


def _review_of_pr(session: Session, pull_request: PullRequest, review_id: int) -> PullReview:
    review = session.get(PullReview, review_id)
    if review is None or review.pull_request_id != pull_request.id:
        raise NotFound()
    return review


def get_review(
    session: Session, actor: Actor, pull_request: PullRequest, review_id: int
) -> PullReview:
    """A review of this pull request; another user's pending review does not exist."""
    review = _review_of_pr(session, pull_request, review_id)
    if review.state == ReviewState.PENDING and review.user_id != actor.user_id:
        raise NotFound()
    return review


def list_reviews(session: Session, actor: Actor, pull_request: PullRequest) -> list[PullReview]:
    query = select(PullReview).where(PullReview.pull_request_id == pull_request.id)
    query = query.where(
        or_(PullReview.state != ReviewState.PENDING, PullReview.user_id == actor.user_id)
        if actor.user_id is not None
        else PullReview.state != ReviewState.PENDING
    )
    return list(session.scalars(query.order_by(PullReview.id)))


def pending_review(session: Session, pull_request: PullRequest, user: User) -> PullReview | None:
    return session.scalar(
        select(PullReview).where(
            PullReview.pull_request_id == pull_request.id,
            PullReview.user_id == user.id,
            PullReview.state == ReviewState.PENDING,
        )
    )


def _check_verdict(
    pull_request: PullRequest, user: User, state: ReviewState, body: str, has_comments: bool
) -> None:
    resource = "PullRequestReview"
    if user.id == pr_author_id(pull_request):
        if state == ReviewState.APPROVED:
            raise _invalid(resource, "event", "Can not approve your own pull request")
        if state == ReviewState.CHANGES_REQUESTED:
            raise _invalid(resource, "event", "Can not request changes on your own pull request")
    if state == ReviewState.CHANGES_REQUESTED and not body.strip():
        raise _invalid(resource, "body", "Body is required when requesting changes")
    if state == ReviewState.COMMENTED and not body.strip() and not has_comments:
        raise _invalid(resource, "body", "Body is required when commenting")


def _parse_event(event: str | None) -> ReviewState | None:
    if event is None or event == "" or event == "PENDING":
        return None
    state = EVENTS.get(event.upper())
    if state is None:
        raise _invalid(
            "PullRequestReview", "event", "event must be APPROVE, REQUEST_CHANGES or COMMENT"
        )
    return state


@dataclass(frozen=True)
class CommentInput:
    body: str
    path: str | None = None
    line: int | None = None
    side: str | None = None
    start_line: int | None = None
    start_side: str | None = None
    position: int | None = None


def _require_open(pull_request: PullRequest) -> None:
    if pull_request.issue.locked:
        raise Forbidden("Pull request is locked.")


def _new_comment(
    review: PullReview,
    pull_request: PullRequest,
    user: User,
    placement: Placement,
    commit_id: str,
    body: str,
) -> ReviewComment:
    return ReviewComment(
        pull_request_id=pull_request.id,
        review=review,
        user_id=user.id,
        path=placement.path,
        side=placement.side,
        line=placement.line,
        start_line=placement.start_line,
        start_side=placement.start_side,
        original_line=placement.line,
        original_start_line=placement.start_line,
        position=placement.position,
        original_position=placement.position,
        commit_id=commit_id,
        original_commit_id=commit_id,
        diff_hunk=placement.diff_hunk,
        line_text=placement.line_text,
        body=body,
    )


def _resolve_commit(
    git_repo: pygit2.Repository, pull_request: PullRequest, commit_id: str | None
) -> str:
    if not commit_id:
        return pull_request.head_sha
    try:
        return str(git_repo[commit_id.lower()].peel(pygit2.Commit).id)
    except (KeyError, ValueError, pygit2.GitError):
        raise _invalid(
            "PullRequestReview", "commit_id", "commit_id is not part of the pull request"
        ) from None


def create_review(
    session: Session,
    settings: Settings,
    actor: Actor,
    pull_request: PullRequest,
    *,
    body: str | None = None,
    event: str | None = None,
    commit_id: str | None = None,
    comments: Sequence[CommentInput] = (),
    events: EventBus | None = None,
) -> PullReview:
    """A review, submitted at once (`event`) or left PENDING (no event) for its author to
    submit later, with its line comments. Nothing is written when any part is refused."""
    user = _signed_in(actor)
    repository = pr_base_repository(pull_request)
    authorize(session, actor, repository, Permission.READ)
    _require_open(pull_request)
    state = _parse_event(event)
    text = _clean_body(body, "PullRequestReview")
    if state is None and pending_review(session, pull_request, user) is not None:
        raise _invalid(
            "PullRequestReview", "user_id", "User can only have one pending review per pull request"
        )
    if state is not None:
        _check_verdict(pull_request, user, state, text, bool(comments))
    git_repo = git_for(settings, pull_request)
    sha = _resolve_commit(git_repo, pull_request, commit_id)
    placements = [
        (
            place_comment(
                git_repo,
                pull_request,
                sha,
                path=c.path,
                line=c.line,
                side=c.side,
                start_line=c.start_line,
                start_side=c.start_side,
                position=c.position,
            ),
            _clean_body(c.body, "PullRequestReviewComment"),
        )
        for c in comments
    ]
    review = PullReview(
        pull_request_id=pull_request.id,
        user_id=user.id,
        state=state or ReviewState.PENDING,
        body=text,
        commit_id=sha,
        submitted_at=utcnow() if state is not None else None,
    )
    session.add(review)
    for placement, comment_body in placements:
        session.add(_new_comment(review, pull_request, user, placement, sha, comment_body))
    session.flush()
    if state is not None:
        _after_submit(session, pull_request, review, user)
    return review


def _after_submit(
    session: Session, pull_request: PullRequest, review: PullReview, user: User
) -> None:
    """A submitted review answers the request made of its author, and (as on GitHub) the
    requests made of the teams they belong to: one member's review satisfies a team."""
    teams = select(TeamMember.team_id).where(TeamMember.user_id == user.id)
    for request in session.scalars(
        select(ReviewRequest).where(
            ReviewRequest.pull_request_id == pull_request.id,
            or_(ReviewRequest.user_id == user.id, ReviewRequest.team_id.in_(teams)),
        )
    ):
        session.delete(request)
    session.flush()


def submit_review(
    session: Session,
    actor: Actor,
    pull_request: PullRequest,
    review: PullReview,
    *,
    event: str,
    body: str | None = None,
) -> PullReview:
    user = _signed_in(actor)
    if review.user_id != user.id:
        raise NotFound()
    if review.state != ReviewState.PENDING:
        raise _invalid("PullRequestReview", "state", "Can not submit a non-pending review")
    state = _parse_event(event)
    if state is None:
        raise _invalid("PullRequestReview", "event", "event is required")
    text = _clean_body(body if body is not None else review.body, "PullRequestReview")
    has_comments = (
        session.scalar(select(ReviewComment.id).where(ReviewComment.review_id == review.id))
        is not None
    )
    _check_verdict(pull_request, user, state, text, has_comments)
    review.state = state
    review.body = text
    review.submitted_at = utcnow()
    session.flush()
    _after_submit(session, pull_request, review, user)
    return review


def update_review(session: Session, actor: Actor, review: PullReview, *, body: str) -> PullReview:
    user = _signed_in(actor)
    if review.user_id != user.id:
        raise Forbidden("Only the author may edit a review.")
    review.body = _clean_body(body, "PullRequestReview")
    session.flush()
    return review


def delete_pending_review(session: Session, actor: Actor, review: PullReview) -> None:
    user = _signed_in(actor)
    if review.user_id != user.id:
        raise NotFound()
    if review.state != ReviewState.PENDING:
        raise _invalid(
            "PullRequestReview", "state", "Can not delete a non-pending pull request review"
        )
    session.delete(review)
    session.flush()


def dismiss_review(
    session: Session, actor: Actor, pull_request: PullRequest, review: PullReview, *, message: str
) -> PullReview:
    repository = pr_base_repository(pull_request)
    authorize(session, actor, repository, Permission.WRITE)
    if review.state not in (ReviewState.APPROVED, ReviewState.CHANGES_REQUESTED):
        raise _invalid(
            "PullRequestReview",
            "state",
            f"Can not dismiss a {review.state.value.lower()} pull request review",
        )
    if not (message or "").strip():
        raise _invalid("PullRequestReview", "message", "message is required")
    review.state = ReviewState.DISMISSED
    review.dismissed_message = _clean_body(message, "PullRequestReview")
    session.flush()
    return review


# The decision ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewSummary:
    approver_ids: set[int]
    changes_requested_ids: set[int]

    @property
    def changes_requested(self) -> bool:
        return bool(self.changes_requested_ids)


def review_summary(session: Session, pull_request: PullRequest) -> ReviewSummary:
    """Each reviewer's latest verdict, counting only reviewers with write access (GitHub's
    rule): who approves, who requests changes."""
    repository = pr_base_repository(pull_request)
    latest: dict[int, PullReview] = {}
    rows = session.scalars(
        select(PullReview)
        .where(
            PullReview.pull_request_id == pull_request.id,
            PullReview.state.in_(
                [ReviewState.APPROVED, ReviewState.CHANGES_REQUESTED, ReviewState.DISMISSED]
            ),
        )
        .order_by(PullReview.id)
    )
    for review in rows:
        if review.user_id is not None:
            latest[review.user_id] = review
    approvers: set[int] = set()
    requesters: set[int] = set()
    for user_id, review in latest.items():
        user = review.user
        if user is None or not user.is_active or user_id == pr_author_id(pull_request):
            continue
        permission = repository_permission(session, Actor(user=user), repository)
        if permission is None or permission < Permission.WRITE:
            continue
        if review.state == ReviewState.APPROVED:
            approvers.add(user_id)
        elif review.state == ReviewState.CHANGES_REQUESTED:
            requesters.add(user_id)
    return ReviewSummary(approvers, requesters)


def review_decision(session: Session, pull_request: PullRequest) -> str | None:
    """GitHub's `reviewDecision`: CHANGES_REQUESTED, APPROVED, REVIEW_REQUIRED, or None when
    the base branch requires no review and nobody has given a verdict."""
    summary = review_summary(session, pull_request)
    if summary.changes_requested:
        return "CHANGES_REQUESTED"
    rule = protection.rule_for(session, pr_base_repository(pull_request), pull_request.base_ref)
    required = (
        rule.required_approving_review_count
        if rule is not None and rule.require_pull_request
        else 0
    )
    if summary.approver_ids and len(summary.approver_ids) >= required:
        return "APPROVED"
    if required > 0:
        return "REVIEW_REQUIRED"
    return None


# Review comments -------------------------------------------------------------------------------


def visible_comments(
    session: Session, actor: Actor, pull_request: PullRequest | None, repository: Repository
) -> Any:
    """The query of review comments the actor sees: others' pending drafts are hidden."""
    query = (
        select(ReviewComment)
        .join(PullReview, PullReview.id == ReviewComment.review_id)
        .join(PullRequest, PullRequest.id == ReviewComment.pull_request_id)
        .where(PullRequest.repository_id == repository.id)
    )
    if pull_request is not None:
        query = query.where(ReviewComment.pull_request_id == pull_request.id)
    visible = PullReview.state != ReviewState.PENDING
    if actor.user_id is not None:
        visible = or_(visible, PullReview.user_id == actor.user_id)
    return query.where(visible)


def list_comments(
    session: Session,
    actor: Actor,
    repository: Repository,
    pull_request: PullRequest | None = None,
    *,
    review: PullReview | None = None,
    offset: int = 0,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[ReviewComment]:
    query = visible_comments(session, actor, pull_request, repository)
    if review is not None:
        query = query.where(ReviewComment.review_id == review.id)
    query = query.order_by(ReviewComment.id.desc() if newest_first else ReviewComment.id)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def get_comment(
    session: Session, actor: Actor, repository: Repository, comment_id: int
) -> ReviewComment:
    comment = session.scalar(
        visible_comments(session, actor, None, repository).where(ReviewComment.id == comment_id)
    )
    if comment is None:
        raise NotFound()
    return comment


def create_comment(
    session: Session,
    settings: Settings,
    actor: Actor,
    pull_request: PullRequest,
    *,
    body: str,
    commit_id: str | None = None,
    path: str | None = None,
    line: int | None = None,
    side: str | None = None,
    start_line: int | None = None,
    start_side: str | None = None,
    position: int | None = None,
    in_reply_to: int | None = None,
) -> ReviewComment:
    """A single review comment (in a COMMENTED review of its own, as GitHub does), or a reply
    to a thread (`in_reply_to`: any comment of it)."""
    user = _signed_in(actor)
    repository = pr_base_repository(pull_request)
    authorize(session, actor, repository, Permission.READ)
    _require_open(pull_request)
    text = _clean_body(body, "PullRequestReviewComment")
    if not text.strip():
        raise ValidationFailed.missing("PullRequestReviewComment", "body")
    if in_reply_to is not None:
        parent = get_comment(session, actor, repository, in_reply_to)
        if parent.pull_request_id != pull_request.id:
            raise NotFound()
        return reply(session, actor, pull_request, parent, body=text)
    git_repo = git_for(settings, pull_request)
    sha = _resolve_commit(git_repo, pull_request, commit_id)
    placement = place_comment(
        git_repo,
        pull_request,
        sha,
        path=path,
        line=line,
        side=side,
        start_line=start_line,
        start_side=start_side,
        position=position,
    )
    review = PullReview(
        pull_request_id=pull_request.id,
        user_id=user.id,
        state=ReviewState.COMMENTED,
        body="",
        commit_id=sha,
        submitted_at=utcnow(),
    )
    session.add(review)
    comment = _new_comment(review, pull_request, user, placement, sha, text)
    session.add(comment)
    session.flush()
    return comment


def thread_root(session: Session, comment: ReviewComment) -> ReviewComment:
    if comment.in_reply_to_id is None:
        return comment
    root = session.get(ReviewComment, comment.in_reply_to_id)
    return root if root is not None else comment


def reply(
    session: Session,
    actor: Actor,
    pull_request: PullRequest,
    parent: ReviewComment,
    *,
    body: str,
) -> ReviewComment:
    """A reply joins the thread's root; inside a pending review it joins that draft."""
    user = _signed_in(actor)
    text = _clean_body(body, "PullRequestReviewComment")
    if not text.strip():
        raise ValidationFailed.missing("PullRequestReviewComment", "body")
    root = thread_root(session, parent)
    review = pending_review(session, pull_request, user)
    if review is None:
        review = PullReview(
            pull_request_id=pull_request.id,
            user_id=user.id,
            state=ReviewState.COMMENTED,
            body="",
            commit_id=root.commit_id,
            submitted_at=utcnow(),
        )
        session.add(review)
    comment = ReviewComment(
        pull_request_id=pull_request.id,
        review=review,
        user_id=user.id,
        path=root.path,
        side=root.side,
        line=root.line,
        start_line=root.start_line,
        start_side=root.start_side,
        original_line=root.original_line,
        original_start_line=root.original_start_line,
        position=root.position,
        original_position=root.original_position,
        commit_id=root.commit_id,
        original_commit_id=root.original_commit_id,
        diff_hunk=root.diff_hunk,
        line_text=root.line_text,
        in_reply_to_id=root.id,
        body=text,
        outdated=root.outdated,
    )
    session.add(comment)
    session.flush()
    return comment


def add_pending_comment(
    session: Session,
    settings: Settings,
    actor: Actor,
    pull_request: PullRequest,
    comment: CommentInput,
) -> ReviewComment:
    """A comment added to the actor's pending review (started when there is none): the web
    UI's "Start a review" / "Add review comment"."""
    user = _signed_in(actor)
    repository = pr_base_repository(pull_request)
    authorize(session, actor, repository, Permission.READ)
    _require_open(pull_request)
    review = pending_review(session, pull_request, user)
    if review is None:
        review = create_review(session, settings, actor, pull_request)
    git_repo = git_for(settings, pull_request)
    placement = place_comment(
        git_repo,
        pull_request,
        pull_request.head_sha,
        path=comment.path,
        line=comment.line,
        side=comment.side,
        start_line=comment.start_line,
        start_side=comment.start_side,
        position=comment.position,
    )
    text = _clean_body(comment.body, "PullRequestReviewComment")
    if not text.strip():
        raise ValidationFailed.missing("PullRequestReviewComment", "body")
    row = _new_comment(review, pull_request, user, placement, pull_request.head_sha, text)
    session.add(row)
    session.flush()
    return row


def may_edit_comment(
    session: Session, actor: Actor, comment: ReviewComment, repository: Repository
) -> bool:
    return actor.user_id is not None and (
        comment.user_id == actor.user_id or _can_write(session, actor, repository)
    )


def edit_comment(
    session: Session, actor: Actor, repository: Repository, comment: ReviewComment, *, body: str
) -> ReviewComment:
    if comment.user_id != actor.user_id:
        authorize(session, actor, repository, Permission.WRITE)
    text = _clean_body(body, "PullRequestReviewComment")
    if not text.strip():
        raise ValidationFailed.missing("PullRequestReviewComment", "body")
    comment.body = text
    session.flush()
    return comment


def delete_comment(
    session: Session, actor: Actor, repository: Repository, comment: ReviewComment
) -> None:
    if comment.user_id != actor.user_id:
        authorize(session, actor, repository, Permission.WRITE)
    session.delete(comment)
    session.flush()


def set_thread_resolved(
    session: Session,
    actor: Actor,
    pull_request: PullRequest,
    comment: ReviewComment,
    resolved: bool,
) -> ReviewComment:
    """Resolve or unresolve a thread: people with write access and the pull request's author."""
    user = _signed_in(actor)
    repository = pr_base_repository(pull_request)
    if user.id != pr_author_id(pull_request):
        authorize(session, actor, repository, Permission.WRITE)
    root = thread_root(session, comment)
    root.resolved = resolved
    root.resolved_by_id = user.id if resolved else None
    session.flush()
    return root


@dataclass
class Thread:
    root: ReviewComment
    replies: list[ReviewComment] = field(default_factory=list)

    @property
    def comments(self) -> list[ReviewComment]:
        return [self.root, *self.replies]


def threads(session: Session, actor: Actor, pull_request: PullRequest) -> list[Thread]:
    repository = pr_base_repository(pull_request)
    by_root: dict[int, Thread] = {}
    ordered: list[Thread] = []
    for comment in list_comments(session, actor, repository, pull_request):
        if comment.in_reply_to_id is None:
            thread = Thread(comment)
            by_root[comment.id] = thread
            ordered.append(thread)
        elif comment.in_reply_to_id in by_root:
            by_root[comment.in_reply_to_id].replies.append(comment)
    return ordered


# Moving heads ----------------------------------------------------------------------------------


def refresh_comments(
    session: Session, git_repo: pygit2.Repository, pull_request: PullRequest
) -> int:
    """Follow the head: a comment whose lines read the same in the new head's diff moves to it,
    any other becomes outdated. Returns how many became outdated."""
    head = pull_request.head_sha
    diffs: dict[str, FileDiff | None] = {}
    outdated = 0
    rows = session.scalars(
        select(ReviewComment).where(
            ReviewComment.pull_request_id == pull_request.id,
            ReviewComment.outdated.is_(False),
            ReviewComment.commit_id != head,
        )
    )
    for comment in rows:
        if comment.path not in diffs:
            diffs[comment.path] = file_diff(git_repo, pull_request, head, comment.path)
        diff = diffs[comment.path]
        entry = diff.find(comment.side, comment.line) if diff and comment.line else None
        start = comment.start_line or comment.line
        same = (
            entry is not None
            and diff is not None
            and start is not None
            and comment.line is not None
            and (comment.start_side in (None, comment.side))
            and diff.text_between(comment.side, start, comment.line) == comment.line_text
        )
        if same and entry is not None:
            comment.commit_id = head
            comment.position = entry.position
        else:
            comment.outdated = True
            comment.line = None
            comment.start_line = None
            comment.position = None
            outdated += 1
    session.flush()
    return outdated


def dismiss_stale_approvals(session: Session, pull_request: PullRequest) -> int:
    """Where the base branch's rule says so, approvals of an older head are dismissed."""
    rule = protection.rule_for(session, pr_base_repository(pull_request), pull_request.base_ref)
    if rule is None or not rule.dismiss_stale_reviews:
        return 0
    stale = session.scalars(
        select(PullReview).where(
            PullReview.pull_request_id == pull_request.id,
            PullReview.state == ReviewState.APPROVED,
            PullReview.commit_id != pull_request.head_sha,
        )
    ).all()
    for review in stale:
        review.state = ReviewState.DISMISSED
        review.dismissed_message = "A new commit was pushed; this approval is stale."
    session.flush()
    return len(stale)


def head_moved(session: Session, settings: Settings, pull_request: PullRequest) -> None:
    """What a new head means for reviews (the `pull_request` `synchronize` event)."""
    dismiss_stale_approvals(session, pull_request)
    refresh_comments(session, git_for(settings, pull_request), pull_request)


# Suggestions -----------------------------------------------------------------------------------


def suggestion_of(body: str) -> str | None:
    found = SUGGESTION_RE.search(body or "")
    if found is None:
        return None
    return found.group(1)


def apply_suggestion(
    session: Session,
    settings: Settings,
    actor: Actor,
    pull_request: PullRequest,
    comment: ReviewComment,
    *,
    message: str | None = None,
    events: EventBus | None = None,
) -> str:
    """Commit the comment's suggestion on the head branch; returns the new commit's sha. 422
    when there is nothing to apply or the lines changed since the comment was written."""
    from opencodehub.repos import contents

    resource = "PullRequestReviewComment"
    suggestion = suggestion_of(comment.body)
    if suggestion is None:
        raise _invalid(resource, "body", "The comment has no suggestion.")
    if not pull_request.is_open:
        raise _invalid(resource, "pull_request", "The pull request is closed.")
    if comment.suggestion_applied_sha:
        raise _invalid(resource, "body", "The suggestion was already applied.")
    if comment.outdated or comment.line is None or comment.side != Side.RIGHT:
        raise _invalid(resource, "line", "The suggestion no longer applies to the current code.")
    if pull_request.head_repository_id is None:
        raise _invalid(resource, "head", "The head repository no longer exists.")
    head_repo = session.get(Repository, pull_request.head_repository_id)
    if head_repo is None:
        raise _invalid(resource, "head", "The head repository no longer exists.")
    authorize(session, actor, head_repo, Permission.WRITE)
    git_repo = store.open_repository(settings, head_repo.id)
    reference = git_repo.references.get(f"refs/heads/{pull_request.head_ref}")
    if reference is None:
        raise _invalid(resource, "head", "The head branch no longer exists.")
    tip = git_repo[reference.resolve().target].peel(pygit2.Commit)
    try:
        entry = tip.tree[comment.path]
    except KeyError:
        raise _invalid(resource, "path", "The file no longer exists on the head branch.") from None
    blob = git_repo.get(entry.id)
    if not isinstance(blob, pygit2.Blob) or blob.is_binary:
        raise _invalid(resource, "path", "The suggestion no longer applies to the current code.")
    text = blob.data.decode("utf-8", "replace")
    lines = text.split("\n")
    start = (comment.start_line or comment.line) - 1
    end = comment.line
    current = "\n".join(line.rstrip("\r") for line in lines[start:end])
    if end > len(lines) or current != comment.line_text:
        raise _invalid(resource, "line", "The suggestion no longer applies to the current code.")
    replacement = suggestion[:-1] if suggestion.endswith("\n") else suggestion
    new_lines = lines[:start] + ([] if replacement == "" else replacement.split("\n")) + lines[end:]
    result = contents.put_file(
        session,
        settings,
        head_repo,
        actor,
        comment.path,
        content="\n".join(new_lines).encode(),
        message=message or "Apply suggestions from code review",
        sha=str(entry.id),
        branch=pull_request.head_ref,
        events=events,
    )
    comment.suggestion_applied_sha = result.commit.sha
    root = thread_root(session, comment)
    root.resolved = True
    root.resolved_by_id = actor.user_id
    session.flush()
    return result.commit.sha


# Requested reviewers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestedReviewers:
    users: list[User]
    teams: list[Team]


def requested_reviewers(session: Session, pull_request: PullRequest) -> RequestedReviewers:
    rows = session.scalars(
        select(ReviewRequest)
        .where(ReviewRequest.pull_request_id == pull_request.id)
        .order_by(ReviewRequest.id)
    ).all()
    user_ids = [r.user_id for r in rows if r.user_id is not None]
    team_ids = [r.team_id for r in rows if r.team_id is not None]
    users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
    teams = {t.id: t for t in session.scalars(select(Team).where(Team.id.in_(team_ids)))}
    return RequestedReviewers(
        [users[i] for i in user_ids if i in users], [teams[i] for i in team_ids if i in teams]
    )


def _not_collaborator(repository: Repository) -> ValidationFailed:
    message = (
        "Reviews may only be requested from collaborators. One or more of the users or teams "
        f"you specified is not a collaborator of the {repository.full_name} repository."
    )
    return ValidationFailed([FieldError("PullRequest", "reviewers", "custom", message)], message)


def _may_request(session: Session, actor: Actor, pull_request: PullRequest) -> None:
    repository = pr_base_repository(pull_request)
    if actor.user_id is not None and actor.user_id == pr_author_id(pull_request):
        authorize(session, actor, repository, Permission.READ)
        return
    authorize(session, actor, repository, Permission.TRIAGE)


def request_reviewers(
    session: Session,
    actor: Actor,
    pull_request: PullRequest,
    *,
    reviewers: Iterable[str] = (),
    team_reviewers: Iterable[str] = (),
) -> RequestedReviewers:
    """Request reviews from users (who must be able to read the repository) and the owning
    organization's teams; each newly requested user is notified."""
    _signed_in(actor)
    repository = pr_base_repository(pull_request)
    _may_request(session, actor, pull_request)
    names = list(dict.fromkeys(n.strip().lstrip("@") for n in reviewers if n and n.strip()))
    slugs = list(dict.fromkeys(s.strip().lower() for s in team_reviewers if s and s.strip()))
    if len(names) + len(slugs) > MAX_REVIEWERS:
        raise _invalid("PullRequest", "reviewers", f"at most {MAX_REVIEWERS} reviewers at once")
    users: list[User] = []
    for name in names:
        user = accounts.get_user(session, name) if len(name) <= 39 else None
        if user is None or user.is_organization or not user.is_active:
            raise _not_collaborator(repository)
        if user.id == pr_author_id(pull_request):
            message = "Review cannot be requested from pull request author."
            raise ValidationFailed(
                [FieldError("PullRequest", "reviewers", "custom", message)], message
            )
        if repository_permission(session, Actor(user=user), repository) is None:
            raise _not_collaborator(repository)
        users.append(user)
    teams: list[Team] = []
    for slug in slugs:
        team = (
            session.scalar(
                select(Team).where(Team.org_id == repository.owner_id, Team.slug == slug)
            )
            if repository.owner.is_organization and len(slug) <= 255
            else None
        )
        if team is None:
            raise _not_collaborator(repository)
        teams.append(team)
    current = session.scalars(
        select(ReviewRequest).where(ReviewRequest.pull_request_id == pull_request.id)
    ).all()
    have_users = {r.user_id for r in current if r.user_id is not None}
    have_teams = {r.team_id for r in current if r.team_id is not None}
    added: dict[int, str] = {}
    for user in users:
        if user.id not in have_users:
            session.add(
                ReviewRequest(
                    pull_request_id=pull_request.id, user_id=user.id, requested_by_id=actor.user_id
                )
            )
            added[user.id] = "review_requested"
    for team in teams:
        if team.id not in have_teams:
            session.add(
                ReviewRequest(
                    pull_request_id=pull_request.id, team_id=team.id, requested_by_id=actor.user_id
                )
            )
            for member_id in session.scalars(
                select(TeamMember.user_id).where(TeamMember.team_id == team.id)
            ):
                if member_id != actor.user_id:
                    added.setdefault(member_id, "review_requested")
    session.flush()
    added.pop(actor.user_id or 0, None)
    if added:
        _notify(session, repository, pull_request, actor, added)
    return requested_reviewers(session, pull_request)


def _notify(
    session: Session,
    repository: Repository,
    pull_request: PullRequest,
    actor: Actor,
    reasons: dict[int, str],
) -> None:
    try:
        from opencodehub.notifications import service as notifications
    except ImportError:  # notifications are optional to the review itself
        return
    notify = getattr(notifications, "notify", None)
    if notify is None:
        return
    notify(
        session,
        repository=repository,
        issue=pull_request.issue,
        actor=actor,
        reason_for_users=reasons,
        event="review_requested",
        include_watchers=False,
    )


def remove_requested_reviewers(
    session: Session,
    actor: Actor,
    pull_request: PullRequest,
    *,
    reviewers: Iterable[str] = (),
    team_reviewers: Iterable[str] = (),
) -> RequestedReviewers:
    _signed_in(actor)
    _may_request(session, actor, pull_request)
    lowered = {n.strip().lstrip("@").lower() for n in reviewers if n}
    slugs = {s.strip().lower() for s in team_reviewers if s}
    for request in session.scalars(
        select(ReviewRequest).where(ReviewRequest.pull_request_id == pull_request.id)
    ).all():
        if request.user_id is not None:
            user = session.get(User, request.user_id)
            if user is not None and user.username.lower() in lowered:
                session.delete(request)
        elif request.team_id is not None:
            team = session.get(Team, request.team_id)
            if team is not None and team.slug.lower() in slugs:
                session.delete(request)
    session.flush()
    return requested_reviewers(session, pull_request)
