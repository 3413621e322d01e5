"""Background jobs of the issues domain: closing keywords in pushed commits, and (registered
from here, because the notification domain rides on issue activity) notification email.

A push to a repository's default branch closes the issues its new commits name after a
closing keyword (`Fixes #12`, `closes owner/repo#3`), as the pusher, in any repository the
pusher may write to; other references (`#12`) add a `referenced` event to the issue. Handling
is idempotent: an issue already closed is left alone and a commit references an issue once,
so a push seen by several workers changes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pygit2
from sqlalchemy import select

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.background import WorkerContext, background_job
from opencodehub.core.logging import get_logger
from opencodehub.db.engine import Database
from opencodehub.issues import references, service
from opencodehub.issues.models import IssueEvent
from opencodehub.notifications import jobs as notification_jobs
from opencodehub.repos import store
from opencodehub.repos.models import Repository
from opencodehub.repos.pushes import BRANCH_PREFIX, PUSH_EVENT, is_zero_sha

log = get_logger("opencodehub.issues.jobs")

# Commits of one push whose messages are read; a push of a long imported history only closes
# issues named by its most recent commits.
MAX_COMMITS_PER_PUSH = 1_000
MAX_MESSAGE_CHARS = 64 * 1024

__all__ = ["handle_push", "issue_closing_keywords", "notification_jobs"]


def _pushed_messages(
    settings: Settings, repository_id: int, before: str, after: str
) -> list[tuple[str, str]]:
    """(sha, message) of the commits `after` brings that `before` did not have, oldest first."""
    git_repo = store.open_repository(settings, repository_id)
    try:
        walker = git_repo.walk(pygit2.Oid(hex=after), pygit2.enums.SortMode.TOPOLOGICAL)
        if not is_zero_sha(before):
            with contextlib.suppress(KeyError, ValueError, pygit2.GitError):
                walker.hide(pygit2.Oid(hex=before))
    except (KeyError, ValueError, pygit2.GitError):
        return []
    commits: list[tuple[str, str]] = []
    for commit in walker:
        commits.append((str(commit.id), (commit.message or "")[:MAX_MESSAGE_CHARS]))
        if len(commits) >= MAX_COMMITS_PER_PUSH:
            break
    commits.reverse()
    return commits


def handle_push(settings: Settings, database: Database, payload: dict[str, Any]) -> int:
    """Act on one `push` event; returns how many issues it closed."""
    repository_id = payload.get("repository_id")
    pusher_id = payload.get("pusher_id")
    if not isinstance(repository_id, int) or not isinstance(pusher_id, int):
        return 0
    closed_total = 0
    with database.session() as session:
        repository = session.get(Repository, repository_id)
        pusher = session.get(User, pusher_id)
        if repository is None or pusher is None or not pusher.is_active:
            return 0
        default_ref = f"{BRANCH_PREFIX}{repository.default_branch}"
        actor = Actor(user=pusher, method="system")
        for update in payload.get("updates") or []:
            if not isinstance(update, dict) or update.get("ref") != default_ref:
                continue
            if update.get("deleted"):
                continue
            before, after = str(update.get("before", "")), str(update.get("after", ""))
            for sha, message in _pushed_messages(settings, repository.id, before, after):
                _reference(session, repository, pusher, sha, message)
                closed = service.close_by_keywords(
                    session, repository, actor, [message], closed_by_user=pusher, commit_id=sha
                )
                closed_total += len(closed)
    return closed_total


def _reference(session: Any, repository: Repository, pusher: User, sha: str, message: str) -> None:
    """A `referenced` event on each issue of this repository the commit names."""
    for ref in references.issue_references(message)[:20]:
        if ref.owner is not None:
            continue
        resolved = service.resolve_reference(session, repository, ref)
        if resolved is None:
            continue
        _target, issue = resolved
        seen = session.scalar(
            select(IssueEvent.id).where(
                IssueEvent.issue_id == issue.id,
                IssueEvent.event == "referenced",
                IssueEvent.data.contains(sha),
            )
        )
        if seen is None:
            service.record_event(
                session,
                issue,
                pusher,
                "referenced",
                {"commit_id": sha, "commit_repository_id": repository.id},
            )


@background_job("issue-closing-keywords")
async def issue_closing_keywords(context: WorkerContext) -> None:
    def on_push(payload: dict[str, Any]) -> None:
        try:
            handle_push(context.settings, context.database, payload)
        except Exception:
            log.exception("closing keywords failed", repository_id=payload.get("repository_id"))

    unsubscribe = context.events.subscribe(PUSH_EVENT, on_push)
    try:
        await asyncio.Event().wait()
    finally:
        unsubscribe()
