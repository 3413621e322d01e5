"""Notification threads, watch settings and subscriptions: the only code that writes their tables.

`notify()` is what other domains call when something happens on an issue or pull request. It
decides who hears about it (the users given explicit reasons, the thread's subscribers, the
repository's watchers), never the actor, never a user who ignores the repository or the thread
or who can no longer read the repository; it marks each one's thread unread and queues an email
(sent by the `notification-email` background job once the transaction has committed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.core.logging import get_logger
from opencodehub.core.pagination import Page
from opencodehub.core.time import utcnow
from opencodehub.db import transaction
from opencodehub.notifications.models import (
    PARTICIPATING_REASONS,
    NotificationEmail,
    NotificationSettings,
    NotificationThread,
    Reason,
    RepositoryWatch,
    ThreadSubscription,
    WatchLevel,
)
from opencodehub.repos.authz import repository_permission
from opencodehub.repos.models import Repository

if TYPE_CHECKING:
    from opencodehub.issues.models import Issue, IssueComment

log = get_logger("opencodehub.notifications")

_WAKE_MAILERS = "opencodehub.notifications.wake_mailers"
# Called (from the committing thread) when a transaction that queued emails commits.
_wakers: list[Callable[[], None]] = []


def add_email_waker(waker: Callable[[], None]) -> Callable[[], None]:
    _wakers.append(waker)

    def remove() -> None:
        if waker in _wakers:
            _wakers.remove(waker)

    return remove


def _wake_mailers() -> None:
    for waker in list(_wakers):
        try:
            waker()
        except Exception:
            # One mailer gone (its loop closed) must not keep the others asleep: they would
            # send only at their next poll.
            log.exception("email waker failed")


# Subscriptions ---------------------------------------------------------------------------------


def _subscription(session: Session, user_id: int, issue_id: int) -> ThreadSubscription | None:
    return session.scalar(
        select(ThreadSubscription).where(
            ThreadSubscription.user_id == user_id, ThreadSubscription.issue_id == issue_id
        )
    )


def subscribe(session: Session, user: User, issue: Issue, reason: str) -> None:
    """Subscribe `user` to the issue's thread, unless they unsubscribed from it explicitly
    (a later mention or assignment still reaches them through `notify`'s explicit reasons)."""
    existing = _subscription(session, user.id, issue.id)
    if existing is not None:
        return
    try:
        with session.begin_nested():
            session.add(
                ThreadSubscription(
                    user_id=user.id,
                    issue_id=issue.id,
                    repository_id=issue.repository_id,
                    reason=reason,
                    subscribed=True,
                    ignored=False,
                )
            )
    except IntegrityError:
        return


def set_thread_subscription(
    session: Session, user: User, issue: Issue, *, subscribed: bool, ignored: bool = False
) -> ThreadSubscription:
    row = _subscription(session, user.id, issue.id)
    if row is None:
        row = ThreadSubscription(
            user_id=user.id,
            issue_id=issue.id,
            repository_id=issue.repository_id,
            reason=Reason.MANUAL.value,
        )
        session.add(row)
    row.subscribed = subscribed and not ignored
    row.ignored = ignored
    session.flush()
    return row


def thread_subscription(session: Session, user: User, issue: Issue) -> ThreadSubscription | None:
    return _subscription(session, user.id, issue.id)


def is_subscribed(session: Session, user: User, issue: Issue) -> bool:
    row = _subscription(session, user.id, issue.id)
    if row is not None:
        return row.subscribed and not row.ignored
    return watch_level(session, user, issue.repository_id) == WatchLevel.WATCHING.value


# Watching --------------------------------------------------------------------------------------


def watch_level(session: Session, user: User, repository_id: int) -> str:
    level = session.scalar(
        select(RepositoryWatch.level).where(
            RepositoryWatch.user_id == user.id, RepositoryWatch.repository_id == repository_id
        )
    )
    return level or WatchLevel.NOT_WATCHING.value


def get_watch(session: Session, user: User, repository: Repository) -> RepositoryWatch | None:
    return session.scalar(
        select(RepositoryWatch).where(
            RepositoryWatch.user_id == user.id, RepositoryWatch.repository_id == repository.id
        )
    )


def set_watch(session: Session, user: User, repository: Repository, level: str) -> RepositoryWatch:
    if level not in {member.value for member in WatchLevel}:
        raise ValidationFailed.invalid("Subscription", "level", "unknown watch level")
    row = get_watch(session, user, repository)
    if row is None:
        row = RepositoryWatch(user_id=user.id, repository_id=repository.id, level=level)
        session.add(row)
    row.level = level
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_watch(session: Session, user: User, repository: Repository) -> None:
    row = get_watch(session, user, repository)
    if row is not None:
        session.delete(row)
        session.flush()


def watchers_count(session: Session, repository: Repository) -> int:
    from sqlalchemy import func

    return (
        session.scalar(
            select(func.count(RepositoryWatch.id)).where(
                RepositoryWatch.repository_id == repository.id,
                RepositoryWatch.level == WatchLevel.WATCHING.value,
            )
        )
        or 0
    )


# Settings --------------------------------------------------------------------------------------


def user_settings(session: Session, user: User) -> NotificationSettings:
    row = session.get(NotificationSettings, user.id)
    if row is None:
        row = NotificationSettings(user_id=user.id, email_enabled=True)
    return row


def update_settings(session: Session, user: User, *, email_enabled: bool) -> NotificationSettings:
    row = session.get(NotificationSettings, user.id)
    if row is None:
        row = NotificationSettings(user_id=user.id)
        session.add(row)
    row.email_enabled = email_enabled
    session.flush()
    return row


# Notifying -------------------------------------------------------------------------------------


def _may_read(session: Session, user: User, repository: Repository) -> bool:
    if not user.is_active:
        return False
    return repository_permission(session, Actor(user=user, method="system"), repository) is not None


def notify(
    session: Session,
    *,
    repository: Repository,
    issue: Issue,
    actor: User | Actor | None,
    reason_for_users: dict[int, str],
    comment: IssueComment | None = None,
    event: str | None = None,
    include_watchers: bool = True,
) -> list[int]:
    """Mark the thread unread for everyone concerned and queue their emails; returns the ids
    of the users notified. `reason_for_users` names users with a direct reason (mention,
    assign, review_requested); with `include_watchers` the thread's subscribers and the
    repository's watchers hear about it too."""
    actor_user = actor.user if isinstance(actor, Actor) else actor
    actor_id = actor_user.id if actor_user is not None else None
    reasons: dict[int, str] = {}
    ignoring = set(
        session.scalars(
            select(RepositoryWatch.user_id).where(
                RepositoryWatch.repository_id == repository.id,
                RepositoryWatch.level == WatchLevel.IGNORING.value,
            )
        )
    )
    subscriptions = {
        row.user_id: row
        for row in session.scalars(
            select(ThreadSubscription).where(ThreadSubscription.issue_id == issue.id)
        )
    }
    muted = {user_id for user_id, row in subscriptions.items() if row.ignored}
    # Unsubscribed from this thread: watching the repository no longer brings its updates.
    unsubscribed = {user_id for user_id, row in subscriptions.items() if not row.subscribed}
    if include_watchers:
        for user_id in session.scalars(
            select(RepositoryWatch.user_id).where(
                RepositoryWatch.repository_id == repository.id,
                RepositoryWatch.level == WatchLevel.WATCHING.value,
            )
        ):
            if user_id not in unsubscribed:
                reasons[user_id] = Reason.SUBSCRIBED.value
        for user_id, row in subscriptions.items():
            if row.subscribed and not row.ignored:
                reasons[user_id] = (
                    Reason.SUBSCRIBED.value if row.reason == Reason.MANUAL.value else row.reason
                )
                if event in ("closed", "reopened") and row.reason in (
                    Reason.AUTHOR.value,
                    Reason.COMMENT.value,
                    Reason.ASSIGN.value,
                ):
                    reasons[user_id] = Reason.STATE_CHANGE.value
    reasons.update(reason_for_users)
    for user_id in (actor_id, *ignoring, *muted):
        if user_id is not None:
            reasons.pop(user_id, None)
    if not reasons:
        return []
    users = session.scalars(select(User).where(User.id.in_(list(reasons)))).all()
    now = utcnow()
    notified: list[int] = []
    for user in users:
        if not _may_read(session, user, repository):
            continue
        reason = reasons[user.id]
        thread = session.scalar(
            select(NotificationThread).where(
                NotificationThread.user_id == user.id, NotificationThread.issue_id == issue.id
            )
        )
        if thread is None:
            thread = NotificationThread(
                user_id=user.id, repository_id=repository.id, issue_id=issue.id
            )
            session.add(thread)
        thread.reason = reason
        thread.unread = True
        thread.done = False
        thread.last_updated_at = now
        thread.updated_at = now
        if comment is not None:
            thread.latest_comment_id = comment.id
        notified.append(user.id)
        _queue_email(session, user, repository, issue, actor_user, reason, comment, event)
    session.flush()
    return notified


def participants_changed(
    session: Session, *, repository: Repository, issue: Issue, actor: User, assignees: list[User]
) -> None:
    """Newly assigned users are subscribed and told (reason `assign`)."""
    for user in assignees:
        subscribe(session, user, issue, Reason.ASSIGN.value)
    notify(
        session,
        repository=repository,
        issue=issue,
        actor=actor,
        reason_for_users={user.id: Reason.ASSIGN.value for user in assignees},
        include_watchers=False,
    )


def _queue_email(
    session: Session,
    user: User,
    repository: Repository,
    issue: Issue,
    actor: User | None,
    reason: str,
    comment: IssueComment | None,
    event_name: str | None,
) -> None:
    address = user.primary_email
    if not address or not user_settings(session, user).email_enabled:
        return
    kind = "pull" if issue.is_pull_request else "issues"
    label = "PR" if issue.is_pull_request else "Issue"
    who = actor.username if actor is not None else "Someone"
    if comment is not None:
        text = comment.body
    elif event_name in ("closed", "reopened"):
        text = f"{who} {event_name} #{issue.number}."
    else:
        text = issue.body
    session.add(
        NotificationEmail(
            user_id=user.id,
            to_address=address,
            subject=f"[{repository.full_name}] {issue.title} ({label} #{issue.number})",
            body=text[:20_000],
            path=f"/{repository.full_name}/{kind}/{issue.number}",
            reason=reason,
            actor_name=who,
            created_at=utcnow(),
        )
    )
    transaction.after_commit(session, _wake_mailers, key=_WAKE_MAILERS)


# The inbox -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxFilter:
    all: bool = False  # include read threads
    participating: bool = False
    since: datetime | None = None
    before: datetime | None = None
    repository_id: int | None = None


def _inbox_conditions(user: User, filters: InboxFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        NotificationThread.user_id == user.id,
        NotificationThread.done.is_(False),
    ]
    if not filters.all:
        conditions.append(NotificationThread.unread.is_(True))
    if filters.participating:
        conditions.append(NotificationThread.reason.in_(sorted(PARTICIPATING_REASONS)))
    if filters.since is not None:
        conditions.append(NotificationThread.last_updated_at >= filters.since)
    if filters.before is not None:
        conditions.append(NotificationThread.last_updated_at < filters.before)
    if filters.repository_id is not None:
        conditions.append(NotificationThread.repository_id == filters.repository_id)
    return conditions


def list_threads(
    session: Session, user: User, filters: InboxFilter, page: Page
) -> list[NotificationThread]:
    """The user's threads, newest update first, leaving out repositories they can no longer
    read (their rows stay, and come back if access does)."""
    rows = session.scalars(
        select(NotificationThread)
        .where(*_inbox_conditions(user, filters))
        .order_by(NotificationThread.last_updated_at.desc(), NotificationThread.id.desc())
        .offset(page.offset)
        .limit(page.limit + 1)
    ).all()
    visible: list[NotificationThread] = []
    readable: dict[int, bool] = {}
    for row in rows:
        if row.repository_id not in readable:
            repository = session.get(Repository, row.repository_id)
            readable[row.repository_id] = repository is not None and _may_read(
                session, user, repository
            )
        if readable[row.repository_id]:
            visible.append(row)
    return visible


def unread_count(session: Session, user: User) -> int:
    from sqlalchemy import func

    return (
        session.scalar(
            select(func.count(NotificationThread.id)).where(*_inbox_conditions(user, InboxFilter()))
        )
        or 0
    )


def get_thread(session: Session, user: User, thread_id: int) -> NotificationThread:
    if not 0 < thread_id < 2**63:
        raise NotFound()
    thread = session.get(NotificationThread, thread_id)
    if thread is None or thread.user_id != user.id:
        raise NotFound()
    repository = session.get(Repository, thread.repository_id)
    if repository is None or not _may_read(session, user, repository):
        raise NotFound()
    return thread


def mark_thread_read(session: Session, thread: NotificationThread) -> None:
    thread.unread = False
    thread.last_read_at = utcnow()
    session.flush()


def mark_thread_done(session: Session, thread: NotificationThread) -> None:
    thread.unread = False
    thread.done = True
    thread.last_read_at = utcnow()
    session.flush()


def mark_all_read(
    session: Session,
    user: User,
    *,
    last_read_at: datetime | None = None,
    repository_id: int | None = None,
) -> None:
    """Every thread updated up to `last_read_at` (default: every thread) becomes read."""
    conditions = [
        NotificationThread.user_id == user.id,
        NotificationThread.unread.is_(True),
    ]
    if last_read_at is not None:
        conditions.append(NotificationThread.last_updated_at <= last_read_at)
    if repository_id is not None:
        conditions.append(NotificationThread.repository_id == repository_id)
    session.execute(
        update(NotificationThread)
        .where(*conditions)
        .values(unread=False, last_read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.expire_all()


def mark_issue_read(session: Session, user: User, issue: Issue) -> None:
    """Viewing an issue reads its notification, as on GitHub."""
    session.execute(
        update(NotificationThread)
        .where(
            NotificationThread.user_id == user.id,
            NotificationThread.issue_id == issue.id,
            NotificationThread.unread.is_(True),
        )
        .values(unread=False, last_read_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def watched_repositories(session: Session, user: User) -> list[tuple[Repository, str]]:
    """The repositories the user watches or ignores that they can still read."""
    rows = session.execute(
        select(Repository, RepositoryWatch.level)
        .join(RepositoryWatch, RepositoryWatch.repository_id == Repository.id)
        .where(
            RepositoryWatch.user_id == user.id,
            RepositoryWatch.level != WatchLevel.NOT_WATCHING.value,
        )
        .order_by(Repository.lower_name)
        .limit(500)
    ).all()
    return [(repo, level) for repo, level in rows if _may_read(session, user, repo)]
