"""Issues, comments, labels, milestones, assignees and reactions: the only code that writes the
issues tables.

Functions that act for a caller take the `Actor` and ask `authorize()` themselves. The rules,
as on GitHub: read access sees issues; any signed-in reader opens issues and comments (a locked
issue only takes comments from writers); triage or more labels, assigns, closes, reopens and
locks; an issue's author edits, closes and reopens their own issue; a comment's author edits and
deletes their own comment (writers moderate any comment).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pygit2
from markupsafe import Markup
from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import (
    FieldError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from opencodehub.core.logging import get_logger
from opencodehub.core.pagination import Page
from opencodehub.core.time import utcnow
from opencodehub.issues import references
from opencodehub.issues.models import (
    LOCK_REASONS,
    REACTION_CONTENTS,
    Issue,
    IssueComment,
    IssueCommentEdit,
    IssueCounter,
    IssueEvent,
    IssueState,
    Label,
    LabelSeed,
    Milestone,
    Reaction,
    StateReason,
    issue_assignees,
    issue_labels,
    issue_mentions,
)
from opencodehub.notifications import service as notifications
from opencodehub.notifications.models import Reason
from opencodehub.repos import service as repos
from opencodehub.repos import store
from opencodehub.repos.authz import authorize, effective_permission
from opencodehub.repos.models import Collaborator, Repository
from opencodehub.web.markdown import render_markdown

log = get_logger("opencodehub.issues")

TITLE_MAX_LENGTH = 256
BODY_MAX_LENGTH = 65_536  # GitHub's limit for issue and comment bodies
LABEL_NAME_MAX_LENGTH = 50
LABEL_DESCRIPTION_MAX_LENGTH = 100
MILESTONE_TITLE_MAX_LENGTH = 255
MAX_ASSIGNEES = 10  # GitHub's limit
COLOR_RE = re.compile(r"\A[0-9a-fA-F]{6}\Z")
TEMPLATE_MAX_BYTES = 64 * 1024

# GitHub's default labels, created with a repository's first use of labels.
DEFAULT_LABELS: tuple[tuple[str, str, str], ...] = (
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
)


# Permissions -----------------------------------------------------------------------------------


def permission(session: Session, actor: Actor, repository: Repository) -> Permission | None:
    return effective_permission(session, actor, repository)


def can_triage(session: Session, actor: Actor, repository: Repository) -> bool:
    granted = permission(session, actor, repository)
    return granted is not None and granted >= Permission.TRIAGE


def can_write(session: Session, actor: Actor, repository: Repository) -> bool:
    granted = permission(session, actor, repository)
    return granted is not None and granted >= Permission.WRITE


def _signed_in(actor: Actor) -> User:
    if actor.user is None:
        raise Unauthorized()
    return actor.user


def _require_triage(session: Session, actor: Actor, repository: Repository) -> User:
    authorize(session, actor, repository, Permission.TRIAGE)
    repos.ensure_writable(repository)
    return _signed_in(actor)


def _is_author(actor: Actor, author_id: int | None) -> bool:
    return actor.user is not None and author_id is not None and actor.user.id == author_id


def may_edit_issue(session: Session, actor: Actor, repository: Repository, issue: Issue) -> bool:
    if repository.is_archived or actor.user is None:
        return False
    return _is_author(actor, issue.author_id) or can_triage(session, actor, repository)


def may_comment(session: Session, actor: Actor, repository: Repository, issue: Issue) -> bool:
    if repository.is_archived or actor.user is None:
        return False
    if permission(session, actor, repository) is None:
        return False
    return not issue.locked or can_write(session, actor, repository)


def may_edit_comment(
    session: Session, actor: Actor, repository: Repository, comment: IssueComment
) -> bool:
    if repository.is_archived or actor.user is None:
        return False
    return _is_author(actor, comment.author_id) or can_write(session, actor, repository)


# Validation ------------------------------------------------------------------------------------


def _clean_text(value: str | None, resource: str, field_name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationFailed.invalid(resource, field_name, f"{field_name} must be a string")
    if "\x00" in value:
        raise ValidationFailed.invalid(resource, field_name, f"{field_name} contains NUL")
    if len(value) > limit:
        raise ValidationFailed.invalid(
            resource, field_name, f"{field_name} is too long (maximum is {limit} characters)"
        )
    return value


def validate_title(title: str | None, resource: str = "Issue") -> str:
    cleaned = _clean_text(title, resource, "title", TITLE_MAX_LENGTH).strip()
    if not cleaned:
        raise ValidationFailed.missing(resource, "title")
    return cleaned


def validate_body(body: str | None, resource: str = "Issue") -> str:
    return _clean_text(body, resource, "body", BODY_MAX_LENGTH)


# Numbering -------------------------------------------------------------------------------------


def _counter_upsert(session: Session, repository_id: int) -> Any:
    """`INSERT … ON CONFLICT/DUPLICATE KEY UPDATE last_number = last_number + 1` for the
    session's engine: one atomic statement that creates or bumps the counter row."""
    counter = IssueCounter.__table__
    dialect = session.get_bind().dialect.name
    values = {"repository_id": repository_id, "last_number": 1}
    bump = {"last_number": counter.c.last_number + 1}
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql

        return mysql.insert(counter).values(values).on_duplicate_key_update(bump)
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return (
            postgresql.insert(counter)
            .values(values)
            .on_conflict_do_update(index_elements=[counter.c.repository_id], set_=bump)
        )
    from sqlalchemy.dialects import sqlite

    return (
        sqlite.insert(counter)
        .values(values)
        .on_conflict_do_update(index_elements=[counter.c.repository_id], set_=bump)
    )


def _next_number(session: Session, repository_id: int) -> int:
    """The next issue/PR number, safe under concurrent creation on every engine: one atomic
    upsert of the repository's counter row, whose row lock (the database lock on SQLite) queues
    concurrent creators until the first commits. A plain INSERT-then-UPDATE would not do on
    InnoDB: racing inserts that lose hold shared locks on the duplicate row and deadlock when
    they upgrade."""
    counter = IssueCounter.__table__
    session.execute(_counter_upsert(session, repository_id))
    number = session.scalar(
        select(counter.c.last_number).where(counter.c.repository_id == repository_id)
    )
    if number is None:
        raise RuntimeError("the issue counter row vanished")
    return number


# Lookup ----------------------------------------------------------------------------------------


def get_issue(session: Session, repository: Repository, number: int) -> Issue:
    """The issue or pull request `number` of an already-authorized repository; NotFound
    otherwise."""
    if not isinstance(number, int) or not 0 < number < 2**31:
        raise NotFound()
    issue = session.scalar(
        select(Issue).where(Issue.repository_id == repository.id, Issue.number == number)
    )
    if issue is None:
        raise NotFound()
    return issue


def get_comment(session: Session, repository: Repository, comment_id: int) -> IssueComment:
    if not 0 < comment_id < 2**63:
        raise NotFound()
    comment = session.scalar(
        select(IssueComment).where(
            IssueComment.id == comment_id, IssueComment.repository_id == repository.id
        )
    )
    if comment is None:
        raise NotFound()
    return comment


# Events ----------------------------------------------------------------------------------------


def record_event(
    session: Session,
    issue: Issue,
    actor: User | None,
    event: str,
    data: dict[str, Any] | None = None,
) -> IssueEvent:
    row = IssueEvent(
        issue_id=issue.id,
        repository_id=issue.repository_id,
        actor_id=actor.id if actor else None,
        event=event,
        data=json.dumps(data or {}, separators=(",", ":")),
        created_at=utcnow(),
    )
    session.add(row)
    return row


def event_data(row: IssueEvent) -> dict[str, Any]:
    try:
        value = json.loads(row.data or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# Creation --------------------------------------------------------------------------------------


def create_issue_record(
    session: Session,
    repository: Repository,
    author: User,
    title: str,
    body: str | None,
    *,
    is_pull_request: bool = False,
) -> Issue:
    """A new issue (or the issue half of a pull request) with the next number; subscribes the
    author, links references and notifies watchers and mentioned users. The caller has
    authorized the author."""
    issue = Issue(
        repository_id=repository.id,
        number=_next_number(session, repository.id),
        title=validate_title(title, "PullRequest" if is_pull_request else "Issue"),
        body=validate_body(body),
        state=IssueState.OPEN.value,
        author_id=author.id,
        is_pull_request=is_pull_request,
        comments_count=0,
    )
    issue.author = author
    session.add(issue)
    session.flush()
    notifications.subscribe(session, author, issue, Reason.AUTHOR.value)
    _after_text_written(session, repository, issue, author, issue.body, comment=None, new=True)
    return issue


def _after_text_written(
    session: Session,
    repository: Repository,
    issue: Issue,
    author: User,
    text: str,
    *,
    comment: IssueComment | None,
    new: bool,
) -> None:
    """Cross-references and mentions of a new or edited body; notifications for new ones."""
    _record_cross_references(session, repository, issue, author, text, comment)
    mentioned = _mentioned_users(session, repository, text, exclude=author)
    reasons: dict[int, str] = {}
    already = set(
        session.scalars(
            select(issue_mentions.c.user_id).where(issue_mentions.c.issue_id == issue.id)
        )
    )
    for user in mentioned:
        fresh = user.id not in already
        if fresh:
            session.execute(insert(issue_mentions).values(issue_id=issue.id, user_id=user.id))
            already.add(user.id)
        notifications.subscribe(session, user, issue, Reason.MENTION.value)
        # An edit tells only the users it newly mentions.
        if new or fresh:
            reasons[user.id] = Reason.MENTION.value
    if new:
        notifications.notify(
            session,
            repository=repository,
            issue=issue,
            actor=author,
            reason_for_users=reasons,
            comment=comment,
            include_watchers=True,
        )
    elif reasons:
        notifications.notify(
            session,
            repository=repository,
            issue=issue,
            actor=author,
            reason_for_users=reasons,
            comment=comment,
            include_watchers=False,
        )


def _mentioned_users(
    session: Session, repository: Repository, text: str, *, exclude: User | None
) -> list[User]:
    """Mentioned users who may read the repository (others are never told about it)."""
    names = references.mentions(text)[:50]
    if not names:
        return []
    users = session.scalars(
        select(User).where(User.lower_username.in_(names), User.is_active.is_(True))
    ).all()
    found = []
    for user in users:
        if exclude is not None and user.id == exclude.id:
            continue
        if permission(session, Actor(user=user, method="system"), repository) is None:
            continue
        found.append(user)
    return found


def resolve_reference(
    session: Session, repository: Repository, ref: references.IssueRef
) -> tuple[Repository, Issue] | None:
    """The repository and issue a reference names, without authorization."""
    target = repository
    if ref.owner is not None and ref.repo is not None:
        located = repos.locate(session, ref.owner, ref.repo)
        if located is None:
            return None
        target = located.repository
    issue = session.scalar(
        select(Issue).where(Issue.repository_id == target.id, Issue.number == ref.number)
    )
    return (target, issue) if issue is not None else None


def _record_cross_references(
    session: Session,
    repository: Repository,
    source: Issue,
    author: User,
    text: str,
    comment: IssueComment | None,
) -> None:
    """A `cross-referenced` event on each other issue the text names, once per source."""
    for ref in references.issue_references(text)[:50]:
        resolved = resolve_reference(session, repository, ref)
        if resolved is None:
            continue
        _target_repo, target = resolved
        if target.id == source.id:
            continue
        already = session.scalar(
            select(IssueEvent.id).where(
                IssueEvent.issue_id == target.id,
                IssueEvent.event == "cross-referenced",
                IssueEvent.data.contains(f'"source_issue_id":{source.id},'),
            )
        )
        if already is not None:
            continue
        record_event(
            session,
            target,
            author,
            "cross-referenced",
            {
                "source_issue_id": source.id,
                "source_repository_id": repository.id,
                "comment_id": comment.id if comment else None,
            },
        )


# Comments --------------------------------------------------------------------------------------


def add_comment(
    session: Session, actor: Actor, repository: Repository, issue: Issue, body: str
) -> IssueComment:
    """A new comment; any signed-in reader may comment, only writers on a locked issue."""
    user = _signed_in(actor)
    authorize(session, actor, repository, "issues:write")
    repos.ensure_writable(repository)
    if issue.repository_id != repository.id:
        raise NotFound()
    if issue.locked and not can_write(session, actor, repository):
        raise Forbidden("Unable to create comment because issue is locked.")
    text = validate_body(body, "IssueComment")
    if not text.strip():
        raise ValidationFailed.missing("IssueComment", "body")
    now = utcnow()
    comment = IssueComment(
        issue_id=issue.id,
        repository_id=repository.id,
        author_id=user.id,
        body=text,
        created_at=now,
        updated_at=now,
    )
    comment.author = user
    session.add(comment)
    issue.comments_count = (issue.comments_count or 0) + 1
    issue.updated_at = now
    session.flush()
    notifications.subscribe(session, user, issue, Reason.COMMENT.value)
    _after_text_written(session, repository, issue, user, text, comment=comment, new=True)
    return comment


def list_comments(
    session: Session,
    repository: Repository,
    issue: Issue | None,
    page: Page,
    *,
    since: datetime | None = None,
    direction: str = "asc",
) -> list[IssueComment]:
    query = select(IssueComment).where(IssueComment.repository_id == repository.id)
    if issue is not None:
        query = query.where(IssueComment.issue_id == issue.id)
    if since is not None:
        query = query.where(IssueComment.updated_at >= since)
    order = IssueComment.created_at.desc() if direction == "desc" else IssueComment.created_at
    tie = IssueComment.id.desc() if direction == "desc" else IssueComment.id
    return list(
        session.scalars(query.order_by(order, tie).offset(page.offset).limit(page.limit + 1))
    )


def edit_comment(
    session: Session, actor: Actor, repository: Repository, comment: IssueComment, body: str
) -> IssueComment:
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    user = _signed_in(actor)
    if not may_edit_comment(session, actor, repository, comment):
        raise Forbidden("You cannot edit this comment.")
    text = validate_body(body, "IssueComment")
    if not text.strip():
        raise ValidationFailed.missing("IssueComment", "body")
    if text == comment.body:
        return comment
    session.add(
        IssueCommentEdit(
            issue_id=comment.issue_id,
            comment_id=comment.id,
            editor_id=user.id,
            previous_body=comment.body,
            edited_at=utcnow(),
        )
    )
    comment.body = text
    comment.updated_at = utcnow()
    session.flush()
    issue = session.get(Issue, comment.issue_id)
    assert issue is not None
    _after_text_written(session, repository, issue, user, text, comment=comment, new=False)
    return comment


def delete_comment(
    session: Session, actor: Actor, repository: Repository, comment: IssueComment
) -> None:
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    if not may_edit_comment(session, actor, repository, comment):
        raise Forbidden("You cannot delete this comment.")
    issue = session.get(Issue, comment.issue_id)
    if issue is not None:
        issue.comments_count = max((issue.comments_count or 1) - 1, 0)
    session.delete(comment)
    session.flush()


def comment_edits(session: Session, comment: IssueComment) -> list[IssueCommentEdit]:
    return list(
        session.scalars(
            select(IssueCommentEdit)
            .where(IssueCommentEdit.comment_id == comment.id)
            .order_by(IssueCommentEdit.edited_at.desc(), IssueCommentEdit.id.desc())
        )
    )


def issue_edits(session: Session, issue: Issue) -> list[IssueCommentEdit]:
    return list(
        session.scalars(
            select(IssueCommentEdit)
            .where(IssueCommentEdit.issue_id == issue.id, IssueCommentEdit.comment_id.is_(None))
            .order_by(IssueCommentEdit.edited_at.desc(), IssueCommentEdit.id.desc())
        )
    )


# State -----------------------------------------------------------------------------------------


def _close(
    session: Session,
    issue: Issue,
    user: User,
    reason: str,
    *,
    data: dict[str, Any] | None = None,
) -> None:
    now = utcnow()
    issue.state = IssueState.CLOSED.value
    issue.state_reason = reason
    issue.closed_at = now
    issue.closed_by_id = user.id
    issue.updated_at = now
    record_event(session, issue, user, "closed", {"state_reason": reason, **(data or {})})


def _reopen(session: Session, issue: Issue, user: User) -> None:
    issue.state = IssueState.OPEN.value
    issue.state_reason = StateReason.REOPENED.value
    issue.closed_at = None
    issue.closed_by_id = None
    issue.updated_at = utcnow()
    record_event(session, issue, user, "reopened")


def set_state(
    session: Session,
    actor: Actor,
    repository: Repository,
    issue: Issue,
    state: str,
    state_reason: str | None = None,
) -> Issue:
    """Close (completed / not planned) or reopen: the author or a triager."""
    user = _signed_in(actor)
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    if state not in (IssueState.OPEN.value, IssueState.CLOSED.value):
        raise ValidationFailed.invalid("Issue", "state", "state must be open or closed")
    allowed_reasons = (None, StateReason.COMPLETED.value, StateReason.NOT_PLANNED.value)
    if state == IssueState.CLOSED.value and state_reason not in allowed_reasons:
        raise ValidationFailed.invalid("Issue", "state_reason", "invalid state_reason")
    if state == IssueState.OPEN.value and state_reason not in (None, StateReason.REOPENED.value):
        raise ValidationFailed.invalid("Issue", "state_reason", "invalid state_reason")
    if not may_edit_issue(session, actor, repository, issue):
        raise Forbidden("You cannot change the state of this issue.")
    if state == issue.state:
        if state == IssueState.CLOSED.value and state_reason and state_reason != issue.state_reason:
            issue.state_reason = state_reason
        return issue
    if state == IssueState.CLOSED.value:
        _close(session, issue, user, state_reason or StateReason.COMPLETED.value)
    else:
        _reopen(session, issue, user)
    session.flush()
    notifications.notify(
        session,
        repository=repository,
        issue=issue,
        actor=user,
        reason_for_users={},
        event=issue.state,
        include_watchers=True,
    )
    return issue


def close_by_keywords(
    session: Session,
    repository: Repository,
    actor: Actor,
    texts: Sequence[str],
    *,
    closed_by_user: User,
    commit_id: str | None = None,
    pull_request: Issue | None = None,
) -> list[Issue]:
    """Close the open issues that `texts` name after a closing keyword (`Fixes #3`,
    `closes owner/repo#4`), in `repository` or any other repository `actor` may write to.
    Pull requests are not closed this way, as on GitHub."""
    closed: list[Issue] = []
    seen: set[int] = set()
    for text in texts:
        for ref in references.closing_references(text or ""):
            resolved = resolve_reference(session, repository, ref)
            if resolved is None:
                continue
            target_repo, issue = resolved
            if issue.id in seen or issue.is_pull_request or not issue.is_open:
                continue
            if target_repo.is_archived or not can_write(session, actor, target_repo):
                continue
            seen.add(issue.id)
            data: dict[str, Any] = {}
            if commit_id:
                data["commit_id"] = commit_id
                data["commit_repository_id"] = repository.id
            if pull_request is not None:
                data["source_issue_id"] = pull_request.id
            _close(session, issue, closed_by_user, StateReason.COMPLETED.value, data=data)
            closed.append(issue)
    session.flush()
    for issue in closed:
        target = session.get(Repository, issue.repository_id)
        assert target is not None
        notifications.notify(
            session,
            repository=target,
            issue=issue,
            actor=closed_by_user,
            reason_for_users={},
            event="closed",
            include_watchers=True,
        )
    return closed


# Editing ---------------------------------------------------------------------------------------


class _Unset:
    """Marks a field a PATCH did not send (None is a value: "no milestone")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def create_issue(
    session: Session,
    actor: Actor,
    repository: Repository,
    *,
    title: str,
    body: str | None = None,
    labels: Sequence[str] | None = None,
    assignees: Sequence[str] | None = None,
    milestone: int | None = None,
) -> Issue:
    """Open an issue: any signed-in reader. Labels, assignees and a milestone are set only when
    the caller may triage, as on GitHub (otherwise they are dropped silently)."""
    user = _signed_in(actor)
    # "issues:write": a reader may open issues; a CI job token needs its workflow's issues scope.
    authorize(session, actor, repository, "issues:write")
    repos.ensure_writable(repository)
    triage = can_triage(session, actor, repository)
    # Validate everything first, so a bad label leaves no half-made issue.
    label_rows = _labels_by_name(session, repository, labels or []) if triage and labels else []
    assignee_rows = (
        _assignable_users(session, repository, assignees) if triage and assignees else []
    )
    milestone_row = (
        _milestone_for_issue(session, repository, milestone)
        if triage and milestone is not None
        else None
    )
    issue = create_issue_record(session, repository, user, title, body)
    if label_rows:
        _apply_labels(session, issue, user, label_rows, replace=False)
    if assignee_rows:
        _apply_assignees(session, repository, issue, user, assignee_rows, replace=False)
    if milestone_row is not None:
        _apply_milestone(session, issue, user, milestone_row)
    session.flush()
    return issue


def update_issue(
    session: Session,
    actor: Actor,
    repository: Repository,
    issue: Issue,
    *,
    title: Any = UNSET,
    body: Any = UNSET,
    state: Any = UNSET,
    state_reason: Any = UNSET,
    labels: Any = UNSET,
    assignees: Any = UNSET,
    milestone: Any = UNSET,
) -> Issue:
    """GitHub's PATCH: the author or a triager edits title, body and state; labels, assignees
    and milestone need triage and are ignored without it."""
    user = _signed_in(actor)
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    if not may_edit_issue(session, actor, repository, issue):
        raise Forbidden("You cannot edit this issue.")
    triage = can_triage(session, actor, repository)
    new_title = validate_title(title) if title is not UNSET else None
    new_body = validate_body(body) if body is not UNSET else None
    label_rows = (
        _labels_by_name(session, repository, labels or [])
        if triage and labels is not UNSET
        else None
    )
    assignee_rows = (
        _assignable_users(session, repository, assignees or [])
        if triage and assignees is not UNSET
        else None
    )
    milestone_row: Milestone | _Unset | None = UNSET
    if triage and milestone is not UNSET:
        milestone_row = (
            _milestone_for_issue(session, repository, milestone) if milestone is not None else None
        )
    if new_title is not None and new_title != issue.title:
        record_event(session, issue, user, "renamed", {"from": issue.title, "to": new_title})
        issue.title = new_title
    if new_body is not None and new_body != issue.body:
        session.add(
            IssueCommentEdit(
                issue_id=issue.id,
                comment_id=None,
                editor_id=user.id,
                previous_body=issue.body,
                edited_at=utcnow(),
            )
        )
        issue.body = new_body
        _after_text_written(session, repository, issue, user, new_body, comment=None, new=False)
    if label_rows is not None:
        _apply_labels(session, issue, user, label_rows, replace=True)
    if assignee_rows is not None:
        _apply_assignees(session, repository, issue, user, assignee_rows, replace=True)
    if not isinstance(milestone_row, _Unset):
        _apply_milestone(session, issue, user, milestone_row)
    issue.updated_at = utcnow()
    if state is not UNSET and state is not None:
        reason = None if state_reason is UNSET else state_reason
        set_state(session, actor, repository, issue, state, reason)
    elif state_reason is not UNSET and state_reason is not None:
        set_state(session, actor, repository, issue, issue.state, state_reason)
    session.flush()
    return issue


def set_lock(
    session: Session,
    actor: Actor,
    repository: Repository,
    issue: Issue,
    locked: bool,
    reason: str | None = None,
) -> Issue:
    user = _require_triage(session, actor, repository)
    if locked and reason is not None and reason not in LOCK_REASONS:
        raise ValidationFailed.invalid(
            "Issue", "lock_reason", f"lock_reason must be one of {', '.join(LOCK_REASONS)}"
        )
    if issue.locked == locked and (not locked or reason == issue.active_lock_reason):
        return issue
    issue.locked = locked
    issue.active_lock_reason = reason if locked else None
    issue.updated_at = utcnow()
    record_event(session, issue, user, "locked" if locked else "unlocked", {"lock_reason": reason})
    session.flush()
    return issue


# Labels ----------------------------------------------------------------------------------------


def ensure_default_labels(session: Session, repository: Repository) -> None:
    """GitHub's default labels, created on a repository's first use of labels; deleting them
    later does not bring them back."""
    if session.get(LabelSeed, repository.id) is not None:
        return
    try:
        with session.begin_nested():
            session.add(LabelSeed(repository_id=repository.id))
            session.flush()
            existing = set(
                session.scalars(
                    select(Label.lower_name).where(Label.repository_id == repository.id)
                )
            )
            for name, color, description in DEFAULT_LABELS:
                if name not in existing:
                    session.add(
                        Label(
                            repository_id=repository.id,
                            name=name,
                            lower_name=name.lower(),
                            color=color,
                            description=description,
                            is_default=True,
                        )
                    )
            session.flush()
    except IntegrityError:
        # Another request seeded them at the same moment.
        return


def list_labels(session: Session, repository: Repository, page: Page | None = None) -> list[Label]:
    ensure_default_labels(session, repository)
    query = select(Label).where(Label.repository_id == repository.id).order_by(Label.lower_name)
    if page is not None:
        query = query.offset(page.offset).limit(page.limit + 1)
    return list(session.scalars(query))


def get_label(session: Session, repository: Repository, name: str) -> Label:
    ensure_default_labels(session, repository)
    if not isinstance(name, str) or len(name) > LABEL_NAME_MAX_LENGTH:
        raise NotFound()
    label = session.scalar(
        select(Label).where(Label.repository_id == repository.id, Label.lower_name == name.lower())
    )
    if label is None:
        raise NotFound()
    return label


def _label_name(name: str | None) -> str:
    cleaned = _clean_text(name, "Label", "name", LABEL_NAME_MAX_LENGTH).strip()
    if not cleaned:
        raise ValidationFailed.missing("Label", "name")
    if any(ch in cleaned for ch in "\r\n\t"):
        raise ValidationFailed.invalid("Label", "name", "name may not contain line breaks")
    return cleaned


def _color(color: str | None) -> str:
    value = (color or "").strip().removeprefix("#")
    if not COLOR_RE.match(value):
        raise ValidationFailed.invalid("Label", "color", "color must be 6 hexadecimal digits")
    return value.lower()


def _label_exists(session: Session, repository: Repository, name: str, except_id: int = 0) -> bool:
    return (
        session.scalar(
            select(Label.id).where(
                Label.repository_id == repository.id,
                Label.lower_name == name.lower(),
                Label.id != except_id,
            )
        )
        is not None
    )


def create_label(
    session: Session,
    actor: Actor,
    repository: Repository,
    *,
    name: str,
    color: str | None = None,
    description: str | None = None,
) -> Label:
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    ensure_default_labels(session, repository)
    clean = _label_name(name)
    label = Label(
        repository_id=repository.id,
        name=clean,
        lower_name=clean.lower(),
        color=_color(color) if color is not None else "ededed",
        description=_clean_text(
            description, "Label", "description", LABEL_DESCRIPTION_MAX_LENGTH
        ).strip(),
    )
    if _label_exists(session, repository, clean):
        raise ValidationFailed.exists("Label", "name")
    session.add(label)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ValidationFailed.exists("Label", "name") from None
    return label


def update_label(
    session: Session,
    actor: Actor,
    repository: Repository,
    label: Label,
    *,
    new_name: str | None = None,
    color: str | None = None,
    description: str | None = None,
) -> Label:
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    if new_name is not None:
        clean = _label_name(new_name)
        if _label_exists(session, repository, clean, except_id=label.id):
            raise ValidationFailed.exists("Label", "name")
        label.name = clean
        label.lower_name = clean.lower()
    if color is not None:
        label.color = _color(color)
    if description is not None:
        label.description = _clean_text(
            description, "Label", "description", LABEL_DESCRIPTION_MAX_LENGTH
        ).strip()
    label.updated_at = utcnow()
    session.flush()
    return label


def delete_label(session: Session, actor: Actor, repository: Repository, label: Label) -> None:
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    session.execute(delete(issue_labels).where(issue_labels.c.label_id == label.id))
    session.delete(label)
    session.flush()
    session.expire_all()


def _labels_by_name(session: Session, repository: Repository, names: Sequence[str]) -> list[Label]:
    """The repository's labels with these names; 422 naming the first that does not exist."""
    ensure_default_labels(session, repository)
    if not isinstance(names, list | tuple) or any(not isinstance(n, str) for n in names):
        raise ValidationFailed.invalid("Label", "name", "labels must be a list of names")
    if len(names) > 100:
        raise ValidationFailed.invalid("Label", "name", "too many labels")
    wanted = {name.strip().lower(): name for name in names if name.strip()}
    if any(len(name) > LABEL_NAME_MAX_LENGTH for name in wanted):
        missing = next(name for name in wanted.values() if len(name) > LABEL_NAME_MAX_LENGTH)
        raise _missing_label(missing)
    found = {
        label.lower_name: label
        for label in session.scalars(
            select(Label).where(
                Label.repository_id == repository.id, Label.lower_name.in_(list(wanted))
            )
        )
    }
    for lower, original in wanted.items():
        if lower not in found:
            raise _missing_label(original)
    return [found[lower] for lower in wanted]


def _missing_label(name: str) -> ValidationFailed:
    return ValidationFailed(
        [FieldError("Label", "name", "invalid", f"Label '{name[:60]}' does not exist")]
    )


def _apply_labels(
    session: Session, issue: Issue, user: User, labels: list[Label], *, replace: bool
) -> None:
    current = {label.id: label for label in issue.labels}
    wanted = {label.id: label for label in labels}
    if replace:
        for label_id, label in current.items():
            if label_id not in wanted:
                issue.labels.remove(label)
                record_event(
                    session, issue, user, "unlabeled", {"name": label.name, "color": label.color}
                )
    for label_id, label in wanted.items():
        if label_id not in current:
            issue.labels.append(label)
            record_event(
                session, issue, user, "labeled", {"name": label.name, "color": label.color}
            )
    issue.updated_at = utcnow()
    session.flush()


def add_labels(
    session: Session, actor: Actor, repository: Repository, issue: Issue, names: Sequence[str]
) -> list[Label]:
    user = _require_triage(session, actor, repository)
    _apply_labels(session, issue, user, _labels_by_name(session, repository, names), replace=False)
    return list(issue.labels)


def set_labels(
    session: Session, actor: Actor, repository: Repository, issue: Issue, names: Sequence[str]
) -> list[Label]:
    user = _require_triage(session, actor, repository)
    _apply_labels(session, issue, user, _labels_by_name(session, repository, names), replace=True)
    return list(issue.labels)


def remove_label(
    session: Session, actor: Actor, repository: Repository, issue: Issue, name: str
) -> list[Label]:
    user = _require_triage(session, actor, repository)
    label = next((lb for lb in issue.labels if lb.lower_name == (name or "").lower()), None)
    if label is None:
        raise NotFound("Label does not exist")
    issue.labels.remove(label)
    record_event(session, issue, user, "unlabeled", {"name": label.name, "color": label.color})
    issue.updated_at = utcnow()
    session.flush()
    return list(issue.labels)


# Assignees -------------------------------------------------------------------------------------


def can_be_assigned(session: Session, repository: Repository, user: User) -> bool:
    if not user.is_active or user.is_organization:
        return False
    granted = effective_permission(session, Actor(user=user, method="system"), repository)
    return granted is not None and granted >= Permission.TRIAGE


def _assignable_users(
    session: Session, repository: Repository, logins: Sequence[str] | None
) -> list[User]:
    if logins is None:
        return []
    if not isinstance(logins, list | tuple) or any(not isinstance(n, str) for n in logins):
        raise ValidationFailed.invalid("Issue", "assignees", "assignees must be a list of logins")
    wanted = list(dict.fromkeys(name.strip() for name in logins if name.strip()))
    if len(wanted) > MAX_ASSIGNEES:
        raise ValidationFailed.invalid(
            "Issue", "assignees", f"at most {MAX_ASSIGNEES} assignees are allowed"
        )
    users: list[User] = []
    for login in wanted:
        user = repos.get_account(session, login)
        if user is None or not can_be_assigned(session, repository, user):
            raise ValidationFailed(
                [FieldError("Issue", "assignees", "invalid", f"'{login[:40]}' cannot be assigned")]
            )
        users.append(user)
    return users


def assignable_users(session: Session, repository: Repository) -> list[User]:
    """Who the sidebar offers: the owner and the collaborators who may be assigned."""
    candidates = [] if repository.owner.is_organization else [repository.owner]
    candidates += session.scalars(
        select(User)
        .join(Collaborator, Collaborator.user_id == User.id)
        .where(Collaborator.repository_id == repository.id)
    ).all()
    seen: dict[int, User] = {}
    for user in candidates:
        if user.id not in seen and can_be_assigned(session, repository, user):
            seen[user.id] = user
    return sorted(seen.values(), key=lambda u: u.lower_username)


def _apply_assignees(
    session: Session,
    repository: Repository,
    issue: Issue,
    user: User,
    assignees: list[User],
    *,
    replace: bool,
) -> None:
    current = {member.id: member for member in issue.assignees}
    wanted = {member.id: member for member in assignees}
    if replace:
        for member_id, member in current.items():
            if member_id not in wanted:
                issue.assignees.remove(member)
                record_event(session, issue, user, "unassigned", {"assignee_id": member.id})
    added: list[User] = []
    for member_id, member in wanted.items():
        if member_id not in current:
            if len(issue.assignees) >= MAX_ASSIGNEES:
                raise ValidationFailed.invalid(
                    "Issue", "assignees", f"at most {MAX_ASSIGNEES} assignees are allowed"
                )
            issue.assignees.append(member)
            record_event(session, issue, user, "assigned", {"assignee_id": member.id})
            added.append(member)
    issue.updated_at = utcnow()
    session.flush()
    if added:
        notifications.participants_changed(
            session, repository=repository, issue=issue, actor=user, assignees=added
        )


def add_assignees(
    session: Session, actor: Actor, repository: Repository, issue: Issue, logins: Sequence[str]
) -> Issue:
    user = _require_triage(session, actor, repository)
    users = _assignable_users(session, repository, logins)
    _apply_assignees(session, repository, issue, user, users, replace=False)
    return issue


def remove_assignees(
    session: Session, actor: Actor, repository: Repository, issue: Issue, logins: Sequence[str]
) -> Issue:
    user = _require_triage(session, actor, repository)
    if not isinstance(logins, list | tuple):
        raise ValidationFailed.invalid("Issue", "assignees", "assignees must be a list of logins")
    lower = {str(name).lower() for name in logins}
    for member in list(issue.assignees):
        if member.lower_username in lower:
            issue.assignees.remove(member)
            record_event(session, issue, user, "unassigned", {"assignee_id": member.id})
    issue.updated_at = utcnow()
    session.flush()
    return issue


# Milestones ------------------------------------------------------------------------------------


def _milestone_title(title: str | None) -> str:
    cleaned = _clean_text(title, "Milestone", "title", MILESTONE_TITLE_MAX_LENGTH).strip()
    if not cleaned:
        raise ValidationFailed.missing("Milestone", "title")
    return cleaned


def _milestone_state(state: str | None) -> str:
    if state not in ("open", "closed"):
        raise ValidationFailed.invalid("Milestone", "state", "state must be open or closed")
    return state


def get_milestone(session: Session, repository: Repository, number: int) -> Milestone:
    if not 0 < number < 2**31:
        raise NotFound()
    row = session.scalar(
        select(Milestone).where(
            Milestone.repository_id == repository.id, Milestone.number == number
        )
    )
    if row is None:
        raise NotFound()
    return row


def _milestone_for_issue(session: Session, repository: Repository, number: Any) -> Milestone:
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValidationFailed.invalid("Issue", "milestone", "milestone must be a number")
    try:
        return get_milestone(session, repository, number)
    except NotFound:
        raise ValidationFailed(
            [FieldError("Issue", "milestone", "invalid", f"Milestone {number} does not exist")]
        ) from None


def _apply_milestone(
    session: Session, issue: Issue, user: User, milestone: Milestone | None
) -> None:
    if issue.milestone_id == (milestone.id if milestone else None):
        return
    if issue.milestone is not None:
        record_event(session, issue, user, "demilestoned", {"title": issue.milestone.title})
    issue.milestone = milestone
    issue.milestone_id = milestone.id if milestone else None
    if milestone is not None:
        record_event(session, issue, user, "milestoned", {"title": milestone.title})
    issue.updated_at = utcnow()
    session.flush()


def set_milestone(
    session: Session, actor: Actor, repository: Repository, issue: Issue, number: int | None
) -> Issue:
    user = _require_triage(session, actor, repository)
    milestone = _milestone_for_issue(session, repository, number) if number is not None else None
    _apply_milestone(session, issue, user, milestone)
    return issue


def create_milestone(
    session: Session,
    actor: Actor,
    repository: Repository,
    *,
    title: str,
    state: str = "open",
    description: str | None = None,
    due_on: datetime | None = None,
) -> Milestone:
    user = _signed_in(actor)
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    clean = _milestone_title(title)
    if session.scalar(
        select(Milestone.id).where(
            Milestone.repository_id == repository.id, Milestone.lower_title == clean.lower()
        )
    ):
        raise ValidationFailed.exists("Milestone", "title")
    state = _milestone_state(state)
    for _attempt in range(3):
        number = (
            session.scalar(
                select(func.max(Milestone.number)).where(Milestone.repository_id == repository.id)
            )
            or 0
        ) + 1
        milestone = Milestone(
            repository_id=repository.id,
            number=number,
            title=clean,
            lower_title=clean.lower(),
            description=_clean_text(description, "Milestone", "description", BODY_MAX_LENGTH),
            state=state,
            due_on=due_on,
            closed_at=utcnow() if state == "closed" else None,
            creator_id=user.id,
        )
        milestone.creator = user
        try:
            with session.begin_nested():
                session.add(milestone)
                session.flush()
            return milestone
        except IntegrityError:
            continue
    raise ValidationFailed.exists("Milestone", "title")


def update_milestone(
    session: Session,
    actor: Actor,
    repository: Repository,
    milestone: Milestone,
    *,
    title: Any = UNSET,
    state: Any = UNSET,
    description: Any = UNSET,
    due_on: Any = UNSET,
) -> Milestone:
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    if title is not UNSET:
        clean = _milestone_title(title)
        if session.scalar(
            select(Milestone.id).where(
                Milestone.repository_id == repository.id,
                Milestone.lower_title == clean.lower(),
                Milestone.id != milestone.id,
            )
        ):
            raise ValidationFailed.exists("Milestone", "title")
        milestone.title = clean
        milestone.lower_title = clean.lower()
    if state is not UNSET:
        new_state = _milestone_state(state)
        if new_state != milestone.state:
            milestone.closed_at = utcnow() if new_state == "closed" else None
        milestone.state = new_state
    if description is not UNSET:
        milestone.description = _clean_text(
            description, "Milestone", "description", BODY_MAX_LENGTH
        )
    if due_on is not UNSET:
        milestone.due_on = due_on
    milestone.updated_at = utcnow()
    session.flush()
    return milestone


def delete_milestone(
    session: Session, actor: Actor, repository: Repository, milestone: Milestone
) -> None:
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    session.execute(
        update(Issue).where(Issue.milestone_id == milestone.id).values(milestone_id=None)
    )
    session.delete(milestone)
    session.flush()
    session.expire_all()


def list_milestones(
    session: Session,
    repository: Repository,
    *,
    state: str = "open",
    sort: str = "due_on",
    direction: str = "asc",
    page: Page | None = None,
) -> list[Milestone]:
    if state not in ("open", "closed", "all"):
        raise ValidationFailed.invalid("Milestone", "state", "state must be open, closed or all")
    query = select(Milestone).where(Milestone.repository_id == repository.id)
    if state != "all":
        query = query.where(Milestone.state == state)
    descending = direction == "desc"
    if sort == "completeness":
        rows = list(session.scalars(query.order_by(Milestone.number)))
        counts = milestone_counts(session, [row.id for row in rows])

        def completeness(row: Milestone) -> float:
            open_count, closed_count = counts.get(row.id, (0, 0))
            total = open_count + closed_count
            return closed_count / total if total else 0.0

        rows.sort(key=completeness, reverse=descending)
        if page is not None:
            rows = rows[page.offset : page.offset + page.limit + 1]
        return rows
    # Milestones without a due date sort last, as on GitHub.
    no_due = Milestone.due_on.is_(None)
    order = (
        [no_due, Milestone.due_on.desc() if descending else Milestone.due_on, Milestone.number]
        if sort == "due_on"
        else [Milestone.number.desc() if descending else Milestone.number]
    )
    query = query.order_by(*order)
    if page is not None:
        query = query.offset(page.offset).limit(page.limit + 1)
    return list(session.scalars(query))


def milestone_counts(session: Session, milestone_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(open, closed) issue and PR counts per milestone."""
    if not milestone_ids:
        return {}
    counts: dict[int, tuple[int, int]] = {}
    for milestone_id, state, count in session.execute(
        select(Issue.milestone_id, Issue.state, func.count(Issue.id))
        .where(Issue.milestone_id.in_(list(milestone_ids)))
        .group_by(Issue.milestone_id, Issue.state)
    ):
        open_count, closed_count = counts.get(milestone_id, (0, 0))
        if state == IssueState.OPEN.value:
            open_count = count
        else:
            closed_count = count
        counts[milestone_id] = (open_count, closed_count)
    return counts


# Reactions -------------------------------------------------------------------------------------


def _reaction_target(issue: Issue, comment: IssueComment | None) -> Any:
    if comment is None:
        return and_(Reaction.issue_id == issue.id, Reaction.comment_id.is_(None))
    return Reaction.comment_id == comment.id


def list_reactions(
    session: Session,
    issue: Issue,
    comment: IssueComment | None,
    *,
    content: str | None = None,
    page: Page | None = None,
) -> list[Reaction]:
    if content is not None and content not in REACTION_CONTENTS:
        raise ValidationFailed.invalid("Reaction", "content", "unknown reaction")
    query = select(Reaction).where(_reaction_target(issue, comment))
    if content is not None:
        query = query.where(Reaction.content == content)
    query = query.order_by(Reaction.created_at, Reaction.id)
    if page is not None:
        query = query.offset(page.offset).limit(page.limit + 1)
    return list(session.scalars(query))


def add_reaction(
    session: Session,
    actor: Actor,
    repository: Repository,
    issue: Issue,
    comment: IssueComment | None,
    content: str,
) -> tuple[Reaction, bool]:
    """The caller's reaction; `(reaction, created)` — the same reaction twice is one."""
    user = _signed_in(actor)
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    if content not in REACTION_CONTENTS:
        raise ValidationFailed.invalid(
            "Reaction", "content", f"content must be one of {', '.join(REACTION_CONTENTS)}"
        )
    if issue.locked and not can_write(session, actor, repository):
        raise Forbidden("Unable to react because issue is locked.")
    existing = session.scalar(
        select(Reaction).where(
            _reaction_target(issue, comment),
            Reaction.user_id == user.id,
            Reaction.content == content,
        )
    )
    if existing is not None:
        return existing, False
    reaction = Reaction(
        issue_id=issue.id,
        comment_id=comment.id if comment else None,
        target_key=comment.id if comment else 0,
        user_id=user.id,
        content=content,
        created_at=utcnow(),
    )
    reaction.user = user
    try:
        with session.begin_nested():
            session.add(reaction)
            session.flush()
    except IntegrityError:
        again = session.scalar(
            select(Reaction).where(
                _reaction_target(issue, comment),
                Reaction.user_id == user.id,
                Reaction.content == content,
            )
        )
        assert again is not None
        return again, False
    return reaction, True


def delete_reaction(
    session: Session,
    actor: Actor,
    repository: Repository,
    issue: Issue,
    comment: IssueComment | None,
    reaction_id: int,
) -> None:
    user = _signed_in(actor)
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    reaction = session.scalar(
        select(Reaction).where(_reaction_target(issue, comment), Reaction.id == reaction_id)
    )
    if reaction is None:
        raise NotFound()
    if reaction.user_id != user.id and not can_write(session, actor, repository):
        raise Forbidden("You cannot delete this reaction.")
    session.delete(reaction)
    session.flush()


def toggle_reaction(
    session: Session,
    actor: Actor,
    repository: Repository,
    issue: Issue,
    comment: IssueComment | None,
    content: str,
) -> None:
    reaction, created = add_reaction(session, actor, repository, issue, comment, content)
    if not created:
        session.delete(reaction)
        session.flush()


@dataclass
class ReactionSummary:
    counts: dict[str, int] = field(default_factory=dict)
    mine: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def reaction_summaries(
    session: Session,
    *,
    issue_ids: Sequence[int] = (),
    comment_ids: Sequence[int] = (),
    viewer: User | None = None,
) -> tuple[dict[int, ReactionSummary], dict[int, ReactionSummary]]:
    """Per-issue (on the issue itself) and per-comment reaction counts in one query each."""
    by_issue: dict[int, ReactionSummary] = {}
    by_comment: dict[int, ReactionSummary] = {}
    queries = []
    if issue_ids:
        queries.append(
            (
                select(Reaction.issue_id, Reaction.content, Reaction.user_id).where(
                    Reaction.issue_id.in_(list(issue_ids)), Reaction.comment_id.is_(None)
                ),
                by_issue,
            )
        )
    if comment_ids:
        queries.append(
            (
                select(Reaction.comment_id, Reaction.content, Reaction.user_id).where(
                    Reaction.comment_id.in_(list(comment_ids))
                ),
                by_comment,
            )
        )
    for query, target in queries:
        for key, content, user_id in session.execute(query):
            summary = target.setdefault(key, ReactionSummary())
            summary.counts[content] = summary.counts.get(content, 0) + 1
            if viewer is not None and user_id == viewer.id:
                summary.mine.add(content)
    return by_issue, by_comment


# Listing and search ----------------------------------------------------------------------------

SORTS = ("created", "updated", "comments")


@dataclass
class IssueFilter:
    """GitHub's list parameters; `labels` must all be present; `assignee`, `milestone` take
    a value, `"none"` or `"*"`; `q` matches every word in the title or body."""

    state: str = "open"
    labels: list[str] = field(default_factory=list)
    no_labels: bool = False
    assignee: str | None = None
    creator: str | None = None
    mentioned: str | None = None
    milestone: str | None = None
    q: str = ""
    kind: str | None = None  # "issue", "pr" or None for both
    sort: str = "created"
    direction: str = "desc"
    since: datetime | None = None

    def validate(self) -> IssueFilter:
        if self.state not in ("open", "closed", "all"):
            raise ValidationFailed.invalid("Issue", "state", "state must be open, closed or all")
        if self.sort not in SORTS:
            raise ValidationFailed.invalid(
                "Issue", "sort", "sort must be created, updated or comments"
            )
        if self.direction not in ("asc", "desc"):
            raise ValidationFailed.invalid("Issue", "direction", "direction must be asc or desc")
        return self


_QUERY_TOKEN_RE = re.compile(r'(-?)(\w+):(?:"([^"]*)"|(\S+))|"([^"]*)"|(\S+)')


def parse_query(text: str) -> IssueFilter:
    """The web UI's `is:open label:bug author:x` query as a filter; unknown qualifiers and bare
    words are free text."""
    filters = IssueFilter(state="open", sort="created", direction="desc")
    words: list[str] = []
    for match in _QUERY_TOKEN_RE.finditer((text or "")[:1000]):
        negated, key, quoted, plain, phrase, word = match.groups()
        if key is None:
            words.append(phrase if phrase is not None else word)
            continue
        value = quoted if quoted is not None else plain
        key = key.lower()
        lowered = value.lower()
        if key == "is" and lowered in ("open", "closed"):
            filters.state = lowered
        elif key == "is" and lowered in ("issue", "pr"):
            filters.kind = lowered
        elif key == "is" and lowered == "all":
            filters.state = "all"
        elif key == "state" and lowered in ("open", "closed", "all"):
            filters.state = lowered
        elif key == "label" and not negated:
            filters.labels.append(value)
        elif key == "author":
            filters.creator = value
        elif key == "assignee":
            filters.assignee = value
        elif key == "mentions":
            filters.mentioned = value
        elif key == "milestone":
            filters.milestone = f"title:{value}"
        elif key == "no" and lowered == "label":
            filters.no_labels = True
        elif key == "no" and lowered == "assignee":
            filters.assignee = "none"
        elif key == "no" and lowered == "milestone":
            filters.milestone = "none"
        elif key == "sort":
            name, _, way = lowered.partition("-")
            if name in SORTS:
                filters.sort = name
            if way in ("asc", "desc"):
                filters.direction = way
        else:
            words.append(match.group(0))
    filters.q = " ".join(words)
    return filters


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def _user_id(session: Session, login: str) -> int | None:
    user = repos.get_account(session, login)
    return user.id if user is not None else None


def _filter_conditions(
    session: Session, repository: Repository, filters: IssueFilter
) -> list[ColumnElement[bool]] | None:
    """SQL conditions for the filter; None when it cannot match anything (unknown user)."""
    conditions: list[ColumnElement[bool]] = [Issue.repository_id == repository.id]
    if filters.state != "all":
        conditions.append(Issue.state == filters.state)
    if filters.kind == "issue":
        conditions.append(Issue.is_pull_request.is_(False))
    elif filters.kind == "pr":
        conditions.append(Issue.is_pull_request.is_(True))
    for name in filters.labels:
        conditions.append(
            exists(
                select(issue_labels.c.issue_id)
                .join(Label, Label.id == issue_labels.c.label_id)
                .where(issue_labels.c.issue_id == Issue.id, Label.lower_name == name.lower())
            )
        )
    if filters.no_labels:
        conditions.append(
            ~exists(select(issue_labels.c.issue_id).where(issue_labels.c.issue_id == Issue.id))
        )
    if filters.assignee:
        any_assignee = exists(
            select(issue_assignees.c.issue_id).where(issue_assignees.c.issue_id == Issue.id)
        )
        if filters.assignee == "none":
            conditions.append(~any_assignee)
        elif filters.assignee == "*":
            conditions.append(any_assignee)
        else:
            user_id = _user_id(session, filters.assignee)
            if user_id is None:
                return None
            conditions.append(
                exists(
                    select(issue_assignees.c.issue_id).where(
                        issue_assignees.c.issue_id == Issue.id,
                        issue_assignees.c.user_id == user_id,
                    )
                )
            )
    if filters.creator:
        user_id = _user_id(session, filters.creator)
        if user_id is None:
            return None
        conditions.append(Issue.author_id == user_id)
    if filters.mentioned:
        user_id = _user_id(session, filters.mentioned)
        if user_id is None:
            return None
        conditions.append(
            exists(
                select(issue_mentions.c.issue_id).where(
                    issue_mentions.c.issue_id == Issue.id, issue_mentions.c.user_id == user_id
                )
            )
        )
    if filters.milestone:
        value = filters.milestone
        if value == "none":
            conditions.append(Issue.milestone_id.is_(None))
        elif value == "*":
            conditions.append(Issue.milestone_id.is_not(None))
        else:
            if value.startswith("title:"):
                column: Any = Milestone.lower_title
                key: Any = value.removeprefix("title:").lower()
            elif value.isdigit() and len(value) < 10:
                column, key = Milestone.number, int(value)
            else:
                raise ValidationFailed.invalid("Issue", "milestone", "unknown milestone")
            milestone_id = session.scalar(
                select(Milestone.id).where(Milestone.repository_id == repository.id, column == key)
            )
            if milestone_id is None:
                return None
            conditions.append(Issue.milestone_id == milestone_id)
    for word in filters.q.split()[:10]:
        pattern = _like(word)
        conditions.append(
            or_(
                func.lower(Issue.title).like(pattern, escape="\\"),
                func.lower(Issue.body).like(pattern, escape="\\"),
            )
        )
    if filters.since is not None:
        conditions.append(Issue.updated_at >= filters.since)
    return conditions


def list_issues(
    session: Session, repository: Repository, filters: IssueFilter, page: Page
) -> list[Issue]:
    """One page (plus one row, to tell whether a next page exists)."""
    conditions = _filter_conditions(session, repository, filters.validate())
    if conditions is None:
        return []
    column = {
        "created": Issue.created_at,
        "updated": Issue.updated_at,
        "comments": Issue.comments_count,
    }[filters.sort]
    order = [column.desc(), Issue.number.desc()]
    if filters.direction == "asc":
        order = [column.asc(), Issue.number.asc()]
    return list(
        session.scalars(
            select(Issue)
            .where(*conditions)
            .order_by(*order)
            .offset(page.offset)
            .limit(page.limit + 1)
        )
    )


def count_by_state(
    session: Session, repository: Repository, filters: IssueFilter
) -> dict[str, int]:
    """Open and closed counts for the filter without its state (the list's two tabs)."""
    probe = IssueFilter(**{**filters.__dict__, "state": "all", "labels": list(filters.labels)})
    conditions = _filter_conditions(session, repository, probe)
    counts = {"open": 0, "closed": 0}
    if conditions is None:
        return counts
    for state, count in session.execute(
        select(Issue.state, func.count(Issue.id)).where(*conditions).group_by(Issue.state)
    ):
        counts[state] = count
    return counts


def open_issue_count(session: Session, repository: Repository) -> int:
    return (
        session.scalar(
            select(func.count(Issue.id)).where(
                Issue.repository_id == repository.id,
                Issue.state == IssueState.OPEN.value,
                Issue.is_pull_request.is_(False),
            )
        )
        or 0
    )


# Timeline --------------------------------------------------------------------------------------


@dataclass
class TimelineItem:
    kind: str  # "comment" or "event"
    created_at: datetime
    comment: IssueComment | None = None
    event: IssueEvent | None = None
    data: dict[str, Any] = field(default_factory=dict)


def timeline(session: Session, issue: Issue) -> list[TimelineItem]:
    items = [
        TimelineItem("comment", comment.created_at, comment=comment)
        for comment in session.scalars(
            select(IssueComment)
            .where(IssueComment.issue_id == issue.id)
            .order_by(IssueComment.created_at, IssueComment.id)
            .limit(2000)
        )
    ]
    items += [
        TimelineItem("event", row.created_at, event=row, data=event_data(row))
        for row in session.scalars(
            select(IssueEvent)
            .where(IssueEvent.issue_id == issue.id)
            .order_by(IssueEvent.created_at, IssueEvent.id)
            .limit(2000)
        )
    ]
    items.sort(key=lambda item: item.created_at)
    return items


def list_events(session: Session, issue: Issue, page: Page) -> list[IssueEvent]:
    return list(
        session.scalars(
            select(IssueEvent)
            .where(IssueEvent.issue_id == issue.id)
            .order_by(IssueEvent.created_at, IssueEvent.id)
            .offset(page.offset)
            .limit(page.limit + 1)
        )
    )


def visible_source(
    session: Session, actor: Actor, data: dict[str, Any]
) -> tuple[Repository, Issue] | None:
    """The issue a cross-reference event points back to, if the viewer may see it; otherwise
    the event is not shown at all (its title must not leak)."""
    source_id = data.get("source_issue_id")
    if not isinstance(source_id, int):
        return None
    source = session.get(Issue, source_id)
    if source is None:
        return None
    repository = session.get(Repository, source.repository_id)
    if repository is None or permission(session, actor, repository) is None:
        return None
    return repository, source


# Rendering -------------------------------------------------------------------------------------


def issue_path(repository: Repository, issue: Issue) -> str:
    kind = "pull" if issue.is_pull_request else "issues"
    return f"/{repository.owner.username}/{repository.name}/{kind}/{issue.number}"


class ReferenceRenderer:
    """Renders markdown with `#N`, `owner/repo#N` and `@user` as links, for one viewer: an
    issue in a repository the viewer cannot read stays plain text, so its title never leaks.
    Lookups are cached for the renderer's life (one page)."""

    def __init__(self, session: Session, actor: Actor, repository: Repository) -> None:
        self.session = session
        self.actor = actor
        self.repository = repository
        self._issues: dict[references.IssueRef, tuple[str, str] | None] = {}
        self._users: dict[str, str | None] = {}
        self._readable: dict[int, bool] = {repository.id: True}

    def _resolve_issue(self, ref: references.IssueRef) -> tuple[str, str] | None:
        if ref in self._issues:
            return self._issues[ref]
        result: tuple[str, str] | None = None
        resolved = resolve_reference(self.session, self.repository, ref)
        if resolved is not None:
            target_repo, issue = resolved
            if target_repo.id not in self._readable:
                self._readable[target_repo.id] = (
                    permission(self.session, self.actor, target_repo) is not None
                )
            if self._readable[target_repo.id]:
                result = (issue_path(target_repo, issue), issue.title)
        self._issues[ref] = result
        return result

    def _resolve_user(self, name: str) -> str | None:
        if name not in self._users:
            user = repos.get_account(self.session, name)
            self._users[name] = f"/{user.username}" if user is not None and user.is_active else None
        return self._users[name]

    def render(self, text: str) -> Markup:
        html = render_markdown(text or "")
        return references.link_references(html, self._resolve_issue, self._resolve_user)


# Templates -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueTemplate:
    filename: str
    name: str
    about: str
    title: str
    labels: tuple[str, ...]
    assignees: tuple[str, ...]
    body: str


def _default_tree(settings: Settings, repository: Repository) -> pygit2.Tree | None:
    if repository.is_empty:
        return None
    try:
        git_repo = store.open_repository(settings, repository.id)
        reference = git_repo.references.get(f"refs/heads/{repository.default_branch}")
        if reference is None:
            return None
        commit = git_repo.get(reference.target)
        return commit.tree if isinstance(commit, pygit2.Commit) else None
    except (pygit2.GitError, KeyError, OSError):
        return None


def _blob_text(git_repo: pygit2.Repository, tree: pygit2.Tree, path: str) -> str | None:
    node: pygit2.Object = tree
    for part in path.split("/"):
        if not isinstance(node, pygit2.Tree):
            return None
        entry = next((item for item in node if item.name.lower() == part.lower()), None)
        if entry is None:
            return None
        node = git_repo.get(entry.id)
    if not isinstance(node, pygit2.Blob) or node.size > TEMPLATE_MAX_BYTES:
        return None
    return node.data.decode("utf-8", errors="replace")


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    parts = text.split("\n")
    for index in range(1, min(len(parts), 200)):
        if parts[index].strip() == "---":
            import yaml

            try:
                meta = yaml.safe_load("\n".join(parts[1:index])) or {}
            except yaml.YAMLError:
                return {}, text
            body = "\n".join(parts[index + 1 :]).lstrip("\n")
            return (meta if isinstance(meta, dict) else {}), body
    return {}, text


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list):
        return tuple(str(part).strip() for part in value if str(part).strip())
    return ()


def issue_templates(settings: Settings, repository: Repository) -> list[IssueTemplate]:
    """`.github/ISSUE_TEMPLATE/*.md` (front matter: name, about, title, labels, assignees) and
    the single `.github/ISSUE_TEMPLATE.md`, from the default branch."""
    tree = _default_tree(settings, repository)
    if tree is None:
        return []
    git_repo = store.open_repository(settings, repository.id)
    found: list[IssueTemplate] = []
    github_dir = _blob_dir(git_repo, tree, ".github")
    if github_dir is not None:
        folder = _blob_dir(git_repo, github_dir, "ISSUE_TEMPLATE")
        if folder is not None:
            for entry in sorted(folder, key=lambda item: item.name.lower())[:50]:
                if not entry.name.lower().endswith(".md"):
                    continue
                blob = git_repo.get(entry.id)
                if not isinstance(blob, pygit2.Blob) or blob.size > TEMPLATE_MAX_BYTES:
                    continue
                meta, body = _front_matter(blob.data.decode("utf-8", errors="replace"))
                found.append(
                    IssueTemplate(
                        filename=entry.name,
                        name=str(meta.get("name") or entry.name[:-3])[:100],
                        about=str(meta.get("about") or "")[:300],
                        title=str(meta.get("title") or "")[:TITLE_MAX_LENGTH],
                        labels=_names(meta.get("labels")),
                        assignees=_names(meta.get("assignees")),
                        body=body,
                    )
                )
    single = _blob_text(git_repo, tree, ".github/ISSUE_TEMPLATE.md")
    if single is not None and not found:
        meta, body = _front_matter(single)
        found.append(
            IssueTemplate(
                filename="ISSUE_TEMPLATE.md",
                name=str(meta.get("name") or "Default")[:100],
                about=str(meta.get("about") or "")[:300],
                title=str(meta.get("title") or "")[:TITLE_MAX_LENGTH],
                labels=_names(meta.get("labels")),
                assignees=_names(meta.get("assignees")),
                body=body,
            )
        )
    return found


def _blob_dir(git_repo: pygit2.Repository, tree: pygit2.Tree, name: str) -> pygit2.Tree | None:
    entry = next((item for item in tree if item.name.lower() == name.lower()), None)
    if entry is None:
        return None
    node = git_repo.get(entry.id)
    return node if isinstance(node, pygit2.Tree) else None


PULL_REQUEST_TEMPLATE_PATHS = (
    ".github/pull_request_template.md",
    "pull_request_template.md",
    "docs/pull_request_template.md",
)


def pull_request_template(settings: Settings, repository: Repository) -> str | None:
    """The body a new pull request starts with, from the default branch."""
    tree = _default_tree(settings, repository)
    if tree is None:
        return None
    git_repo = store.open_repository(settings, repository.id)
    for path in PULL_REQUEST_TEMPLATE_PATHS:
        text = _blob_text(git_repo, tree, path)
        if text is not None:
            return text
    return None


def label_open_counts(session: Session, repository: Repository) -> dict[int, int]:
    """Open issues and pull requests per label, for the labels page."""
    return {
        label_id: count
        for label_id, count in session.execute(
            select(issue_labels.c.label_id, func.count(Issue.id))
            .join(Issue, Issue.id == issue_labels.c.issue_id)
            .where(Issue.repository_id == repository.id, Issue.state == IssueState.OPEN.value)
            .group_by(issue_labels.c.label_id)
        )
    }
