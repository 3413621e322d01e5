"""Pull requests: opening, listing, editing, keeping the head in step with pushes, mergeability
and merging. The only code that writes the pull request tables.

A pull request is an issue (the issues service owns number, title, body, state, comments); this
module owns the refs and the merge state. The head's commits are kept in the base repository as
`refs/pull/{n}/head` (fetched from the fork when the head lives in one), so the base never
borrows objects from a fork and a deleted fork leaves its pull requests readable.

Merging writes its commit in the object database (see `merge.py`), then moves the base branch
with compare-and-swap as the very last step: every database change (the merge record, the issue
closed, the push record) is flushed first, so a base that moved in the meantime rolls all of it
back and answers 409, and a failure before the move leaves the base untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pygit2
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    OCHError,
    ValidationFailed,
)
from opencodehub.core.events import EventBus
from opencodehub.core.logging import get_logger
from opencodehub.core.pagination import Page
from opencodehub.core.time import utcnow
from opencodehub.db import transaction
from opencodehub.issues import service as issues
from opencodehub.issues.models import Issue
from opencodehub.pulls import merge
from opencodehub.pulls.models import (
    FileViewed,
    MergeableState,
    MergeMethod,
    PullRequest,
    PullRequestPush,
    RepositoryMergeSettings,
)
from opencodehub.repos import browse, diffview, forks, statuses, store
from opencodehub.repos import service as repos
from opencodehub.repos.authz import authorize, can
from opencodehub.repos.models import CommitState, Repository
from opencodehub.repos.pushes import RefUpdate, record_push

log = get_logger("opencodehub.pulls")

PULL_REQUEST_EVENT = "pull_request"
BRANCH_PREFIX = "refs/heads/"
MAX_PR_FILES = 3000  # GitHub lists at most 3,000 files of a pull request
MAX_PR_COMMITS = 250  # and at most 250 commits
SORTS = ("created", "updated", "popularity", "long-running")
NOT_MERGEABLE = "Pull Request is not mergeable"
HEAD_MODIFIED = "Head branch was modified. Review and try the merge again."
BASE_MODIFIED = "Base branch was modified. Review and try the merge again."
METHOD_NOT_ALLOWED = {
    MergeMethod.MERGE: "Merge commits are not allowed on this repository.",
    MergeMethod.SQUASH: "Squash merges are not allowed on this repository.",
    MergeMethod.REBASE: "Rebase merges are not allowed on this repository.",
}


class NotMergeable(OCHError):
    """GitHub's 405 for a merge that cannot happen (conflicts, draft, closed, protection)."""

    status_code = 405
    default_message = NOT_MERGEABLE


# Lookup and settings ---------------------------------------------------------------------------


def git_of(settings: Settings, repository: Repository | int) -> pygit2.Repository:
    repository_id = repository if isinstance(repository, int) else repository.id
    return store.open_repository(settings, repository_id)


def get_pull(session: Session, repository: Repository, number: int) -> PullRequest:
    """Pull request `number` of a repository the caller was authorized for."""
    if not isinstance(number, int) or not 0 < number < 2**31:
        raise NotFound()
    pull = session.scalar(
        select(PullRequest).where(
            PullRequest.repository_id == repository.id, PullRequest.number == number
        )
    )
    if pull is None:
        raise NotFound()
    return pull


def pull_for_issue(session: Session, issue: Issue) -> PullRequest | None:
    return session.scalar(select(PullRequest).where(PullRequest.issue_id == issue.id))


def merge_settings(session: Session, repository: Repository) -> RepositoryMergeSettings:
    """The repository's merge settings (GitHub's defaults when never set; not added)."""
    row = session.scalar(
        select(RepositoryMergeSettings).where(
            RepositoryMergeSettings.repository_id == repository.id
        )
    )
    if row is not None:
        return row
    return RepositoryMergeSettings(
        repository_id=repository.id,
        allow_merge_commit=True,
        allow_squash_merge=True,
        allow_rebase_merge=True,
        allow_auto_merge=False,
        delete_branch_on_merge=False,
    )


def update_merge_settings(
    session: Session,
    actor: Actor,
    repository: Repository,
    *,
    allow_merge_commit: bool | None = None,
    allow_squash_merge: bool | None = None,
    allow_rebase_merge: bool | None = None,
    allow_auto_merge: bool | None = None,
    delete_branch_on_merge: bool | None = None,
) -> RepositoryMergeSettings:
    """Change the merge settings (admin); at least one merge method stays allowed."""
    authorize(session, actor, repository, Permission.ADMIN)
    row = merge_settings(session, repository)
    values = {
        "allow_merge_commit": allow_merge_commit,
        "allow_squash_merge": allow_squash_merge,
        "allow_rebase_merge": allow_rebase_merge,
        "allow_auto_merge": allow_auto_merge,
        "delete_branch_on_merge": delete_branch_on_merge,
    }
    for name, value in values.items():
        if value is not None:
            setattr(row, name, bool(value))
    if not (row.allow_merge_commit or row.allow_squash_merge or row.allow_rebase_merge):
        raise ValidationFailed.invalid(
            "Repository", "merge_commit_allowed", "At least one merge method must be allowed."
        )
    if row.id is None:
        session.add(row)
    session.flush()
    return row


# Events ----------------------------------------------------------------------------------------


def _publish(
    session: Session,
    events: EventBus | None,
    action: str,
    pull: PullRequest,
    actor: Actor | User | None,
    **extra: Any,
) -> None:
    """Publish a `pull_request` event once the caller's transaction commits."""
    if events is None:
        return
    actor_id = actor.user_id if isinstance(actor, Actor) else (actor.id if actor else None)
    payload = {
        "action": action,
        "repository_id": pull.repository_id,
        "number": pull.number,
        "pull_request_id": pull.id,
        "head_sha": pull.head_sha,
        "base_ref": pull.base_ref,
        "head_ref": pull.head_ref,
        "head_repository_id": pull.head_repository_id,
        "merged": pull.merged,
        "actor_id": actor_id,
        **extra,
    }
    transaction.after_commit(session, lambda: events.publish(PULL_REQUEST_EVENT, payload))


# Opening ---------------------------------------------------------------------------------------


def _head_invalid(message: str = "") -> ValidationFailed:
    return ValidationFailed(FieldError("PullRequest", "head", "invalid", message))


def _custom(message: str) -> ValidationFailed:
    return ValidationFailed(FieldError("PullRequest", "", "custom", message))


def _branch_sha(git: pygit2.Repository, branch: str) -> str | None:
    if not browse.is_valid_ref_name(branch):
        return None
    try:
        reference = git.references.get(f"{BRANCH_PREFIX}{branch}")
    except (ValueError, pygit2.InvalidSpecError):
        return None
    if reference is None:
        return None
    try:
        return str(reference.resolve().target)
    except (KeyError, pygit2.GitError):
        return None


def resolve_head(
    session: Session,
    actor: Actor,
    base: Repository,
    head: str,
    head_repo: str | None = None,
) -> tuple[Repository, str]:
    """`branch` (same repository) or `owner:branch` (a repository of the same fork network owned
    by `owner`; `head_repo` names it when the owner has several). A head repository the actor
    may not read is a 422 about `head`, never a sign that it exists."""
    if not isinstance(head, str) or not head.strip():
        raise ValidationFailed.missing("PullRequest", "head")
    owner_name, sep, branch = head.partition(":")
    if not sep:
        owner_name, branch = base.owner.username, head
    if not branch or not browse.is_valid_ref_name(branch):
        raise _head_invalid()
    if head_repo and "/" in head_repo:
        owner_name, _, head_repo = head_repo.partition("/")
    if owner_name.lower() == base.owner.username.lower() and (
        not head_repo or head_repo.lower() == base.lower_name
    ):
        return base, branch
    owner = repos.get_account(session, owner_name)
    if owner is None:
        raise _head_invalid()
    statement = select(Repository).where(Repository.owner_id == owner.id)
    if head_repo:
        statement = statement.where(Repository.lower_name == head_repo.lower())
    for candidate in session.scalars(statement.order_by(Repository.id)):
        if not forks.in_same_network(session, candidate, base):
            continue
        if not can(session, actor, candidate, Permission.READ):
            continue
        return candidate, branch
    raise _head_invalid()


def head_label(session: Session, pull: PullRequest) -> str:
    head_repository = (
        session.get(Repository, pull.head_repository_id) if pull.head_repository_id else None
    )
    owner = head_repository.owner.username if head_repository else "unknown"
    return f"{owner}:{pull.head_ref}"


def _diff_stats(git: pygit2.Repository, old_sha: str, new_sha: str) -> tuple[int, int, int]:
    old = git.get(old_sha)
    new = git.get(new_sha)
    assert isinstance(old, pygit2.Commit) and isinstance(new, pygit2.Commit)
    stats = git.diff(old.tree, new.tree).stats
    return stats.files_changed, stats.insertions, stats.deletions


@dataclass(frozen=True)
class DiffCounts:
    """The merge base, commit count and diff stats of a head against one base tip."""

    base_sha: str
    merge_base_sha: str | None
    commits: int
    changed_files: int
    additions: int
    deletions: int

    @classmethod
    def stored(cls, pull: PullRequest) -> DiffCounts:
        return cls(
            pull.base_sha,
            pull.merge_base_sha,
            pull.commits_count,
            pull.changed_files,
            pull.additions,
            pull.deletions,
        )


def _counts(git: pygit2.Repository, head_sha: str, base_sha: str) -> DiffCounts:
    ancestor = merge.merge_base(git, base_sha, head_sha)
    if ancestor is None:
        return DiffCounts(base_sha, None, 0, 0, 0, 0)
    walker = git.walk(pygit2.Oid(hex=head_sha))
    walker.hide(pygit2.Oid(hex=base_sha))
    commits = sum(1 for _ in walker)
    changed, additions, deletions = _diff_stats(git, ancestor, head_sha)
    return DiffCounts(base_sha, ancestor, commits, changed, additions, deletions)


def _apply_counts(pull: PullRequest, counts: DiffCounts) -> None:
    pull.base_sha = counts.base_sha
    pull.merge_base_sha = counts.merge_base_sha
    pull.commits_count = counts.commits
    pull.changed_files = counts.changed_files
    pull.additions = counts.additions
    pull.deletions = counts.deletions


def _refresh_counts(git: pygit2.Repository, pull: PullRequest, base_sha: str) -> None:
    """Merge base, commit count and diff stats for the current head and base."""
    _apply_counts(pull, _counts(git, pull.head_sha, base_sha))


def _set_head_ref(git: pygit2.Repository, pull: PullRequest) -> None:
    git.references.create(pull.head_pull_ref, pygit2.Oid(hex=pull.head_sha), force=True)


def _open_duplicate(
    session: Session, base: Repository, head_repository: Repository, head: str, base_ref: str
) -> PullRequest | None:
    return session.scalar(
        select(PullRequest)
        .join(Issue, Issue.id == PullRequest.issue_id)
        .where(
            PullRequest.repository_id == base.id,
            PullRequest.head_repository_id == head_repository.id,
            PullRequest.head_ref == head,
            PullRequest.base_ref == base_ref,
            Issue.state == "open",
        )
    )


def create_pull(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    *,
    title: str | None,
    head: str,
    base: str,
    body: str | None = None,
    draft: bool = False,
    head_repo: str | None = None,
    maintainer_can_modify: bool = True,
    events: EventBus | None = None,
) -> PullRequest:
    """Open a pull request from `head` into `base` of `repository`."""
    user = actor.user
    if user is None:
        raise NotFound()
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    if not isinstance(title, str) or not title.strip():
        raise ValidationFailed.missing("PullRequest", "title")
    if not isinstance(base, str) or not base:
        raise ValidationFailed.missing("PullRequest", "base")
    head_repository, head_branch = resolve_head(session, actor, repository, head, head_repo)
    base_git = git_of(settings, repository)
    base_sha = _branch_sha(base_git, base)
    if base_sha is None:
        raise ValidationFailed(FieldError("PullRequest", "base", "invalid"))
    head_git = (
        base_git if head_repository.id == repository.id else git_of(settings, head_repository)
    )
    head_sha = _branch_sha(head_git, head_branch)
    if head_sha is None:
        raise _head_invalid()
    label = f"{head_repository.owner.username}:{head_branch}"
    if _open_duplicate(session, repository, head_repository, head_branch, base) is not None:
        raise _custom(f"A pull request already exists for {label}.")
    if head_repository.id != repository.id:
        forks.fetch_objects(settings, head_repository.id, repository.id, head_sha)
    ancestor = merge.merge_base(base_git, base_sha, head_sha)
    if ancestor is None:
        raise _custom(f"The {base} branch has no history in common with {label}.")
    if ancestor == head_sha:
        raise _custom(f"No commits between {base} and {label}")
    issue = issues.create_issue_record(session, repository, user, title, body, is_pull_request=True)
    pull = PullRequest(
        issue_id=issue.id,
        issue=issue,
        repository_id=repository.id,
        number=issue.number,
        head_repository_id=head_repository.id,
        head_ref=head_branch,
        head_sha=head_sha,
        base_ref=base,
        base_sha=base_sha,
        draft=bool(draft),
        merged=False,
        mergeable=None,
        mergeable_state=MergeableState.UNKNOWN.value,
        conflicting_files=[],
        maintainer_can_modify=bool(maintainer_can_modify) and head_repository.id != repository.id,
    )
    _refresh_counts(base_git, pull, base_sha)
    session.add(pull)
    session.flush()
    _set_head_ref(base_git, pull)
    _publish(session, events, "opened", pull, actor)
    return pull


# Listing ---------------------------------------------------------------------------------------


def list_pulls(
    session: Session,
    repository: Repository,
    page: Page,
    *,
    state: str = "open",
    head: str | None = None,
    base: str | None = None,
    sort: str | None = None,
    direction: str | None = None,
) -> tuple[list[PullRequest], int]:
    """GitHub's `GET /pulls` filters: state, `head` as `owner:branch`, base, sort, direction."""
    if state not in ("open", "closed", "all"):
        raise ValidationFailed.invalid("PullRequest", "state", "must be open, closed or all")
    sort = sort or "created"
    if sort not in SORTS:
        raise ValidationFailed.invalid("PullRequest", "sort", f"must be one of {', '.join(SORTS)}")
    if direction not in (None, "asc", "desc"):
        raise ValidationFailed.invalid("PullRequest", "direction", "must be asc or desc")
    statement: Select[tuple[PullRequest]] = (
        select(PullRequest)
        .join(Issue, Issue.id == PullRequest.issue_id)
        .where(PullRequest.repository_id == repository.id)
    )
    if state != "all":
        statement = statement.where(Issue.state == state)
    if base:
        statement = statement.where(PullRequest.base_ref == base)
    if head:
        owner_name, sep, branch = head.partition(":")
        if sep:
            owner = repos.get_account(session, owner_name)
            if owner is None:
                return [], 0
            statement = statement.where(
                PullRequest.head_repository_id.in_(
                    select(Repository.id).where(Repository.owner_id == owner.id)
                )
            )
            if branch:
                statement = statement.where(PullRequest.head_ref == branch)
        else:
            statement = statement.where(PullRequest.head_ref == head)
    descending = (direction or "desc") == "desc"
    if sort == "created":
        keys: list[Any] = [Issue.created_at]
    elif sort == "updated":
        keys = [Issue.updated_at]
    elif sort == "popularity":
        keys = [Issue.comments_count]
    else:
        # Long-running: open the longest, with activity in the past month, as on GitHub.
        statement = statement.where(Issue.updated_at >= utcnow() - timedelta(days=30))
        keys = [Issue.created_at]
        descending = direction == "asc"
    keys.append(PullRequest.id)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    ordered = statement.order_by(*(key.desc() if descending else key.asc() for key in keys))
    return list(session.scalars(ordered.offset(page.offset).limit(page.limit))), total


# Head and base in step with pushes ------------------------------------------------------------


def _record_move(
    session: Session,
    pull: PullRequest,
    actor_id: int | None,
    kind: str,
    ref: str,
    before: str,
    after: str,
    forced: bool,
) -> None:
    session.add(
        PullRequestPush(
            pull_request_id=pull.id,
            actor_id=actor_id,
            kind=kind,
            ref=ref,
            before_sha=before,
            after_sha=after,
            forced=forced,
            created_at=utcnow(),
        )
    )


def live_head_sha(settings: Settings, pull: PullRequest) -> str | None:
    """The head branch's sha now, or None when the branch or its repository is gone."""
    if pull.head_repository_id is None:
        return None
    try:
        return _branch_sha(git_of(settings, pull.head_repository_id), pull.head_ref)
    except pygit2.GitError:
        return None


def synchronize(
    session: Session,
    settings: Settings,
    pull: PullRequest,
    pusher_id: int | None,
    *,
    events: EventBus | None = None,
) -> bool:
    """Follow a moved head branch: fetch its commits into the base, move refs/pull/{n}/head,
    record the push (forced or not) and publish `synchronize`. True when the head moved."""
    if pull.merged or not pull.is_open:
        return False
    new_sha = live_head_sha(settings, pull)
    if new_sha is None or new_sha == pull.head_sha:
        return False
    base_git = git_of(settings, pull.repository_id)
    if pull.head_repository_id != pull.repository_id:
        assert pull.head_repository_id is not None
        forks.fetch_objects(settings, pull.head_repository_id, pull.repository_id, new_sha)
    old_sha = pull.head_sha
    try:
        forced = not base_git.descendant_of(pygit2.Oid(hex=new_sha), pygit2.Oid(hex=old_sha))
    except (KeyError, pygit2.GitError):
        forced = True
    _record_move(
        session,
        pull,
        pusher_id,
        "head",
        f"{BRANCH_PREFIX}{pull.head_ref}",
        old_sha,
        new_sha,
        forced,
    )
    pull.head_sha = new_sha
    base_sha = _branch_sha(base_git, pull.base_ref) or pull.base_sha
    _refresh_counts(base_git, pull, base_sha)
    pull.mergeable = None
    pull.mergeable_state = MergeableState.UNKNOWN.value
    pull.mergeability_key = None
    pull.issue.updated_at = utcnow()
    session.flush()
    _set_head_ref(base_git, pull)
    _clear_stale_views(session, base_git, pull)
    _publish(session, events, "synchronize", pull, None, before=old_sha, forced=forced)
    return True


@dataclass(frozen=True)
class Mergeability:
    """Whether a pull request merges into its base as it is now, computed without touching the
    row: `refresh_mergeability` stores it, a read (`GET /pulls/{n}`) only answers it."""

    mergeable: bool | None
    state: str
    conflicting_files: list[str]
    key: str | None
    counts: DiffCounts | None  # None: the stored counts are for the current base

    @classmethod
    def stored(cls, pull: PullRequest) -> Mergeability:
        return cls(
            pull.mergeable,
            pull.mergeable_state,
            list(pull.conflicting_files or []),
            pull.mergeability_key,
            None,
        )


def compute_mergeability(
    settings: Settings, pull: PullRequest, *, force: bool = False
) -> Mergeability:
    """Whether the pull request merges cleanly into its base as it is now (in memory, no work
    tree), and its conflicting files; the stored answer when it is for these commits (or the
    pull request is closed). Reads git only: `pull` is left as it was."""
    stored = Mergeability.stored(pull)
    if pull.merged or not pull.is_open:
        return stored
    git = git_of(settings, pull.repository_id)
    base_sha = _branch_sha(git, pull.base_ref)
    if base_sha is None:
        return Mergeability(False, MergeableState.DIRTY.value, stored.conflicting_files, None, None)
    key = f"{base_sha}:{pull.head_sha}"
    if pull.mergeability_key == key and not force:
        return stored
    counts = _counts(git, pull.head_sha, base_sha) if base_sha != pull.base_sha else None
    try:
        check = merge.check_mergeable(git, base_sha, pull.head_sha)
    except (KeyError, ValueError, pygit2.GitError):
        check = merge.MergeCheck(False, [], None)
    state = MergeableState.CLEAN if check.mergeable else MergeableState.DIRTY
    return Mergeability(check.mergeable, state.value, list(check.conflicts), key, counts)


def refresh_mergeability(
    session: Session,
    settings: Settings,
    pull: PullRequest,
    *,
    force: bool = False,
) -> PullRequest:
    """Store `compute_mergeability`'s answer on the pull request (a no-op when already known
    for these commits)."""
    fresh = compute_mergeability(settings, pull, force=force)
    if fresh == Mergeability.stored(pull):
        return pull
    if fresh.counts is not None:
        _apply_counts(pull, fresh.counts)
    pull.mergeable = fresh.mergeable
    pull.mergeable_state = fresh.state
    pull.mergeability_key = fresh.key
    if fresh.key is not None:
        pull.conflicting_files = fresh.conflicting_files
    session.flush()
    return pull


def mergeable_state(
    session: Session,
    settings: Settings,
    pull: PullRequest,
    mergeability: Mergeability | None = None,
) -> str:
    """GitHub's `mergeable_state` as of now: unknown, dirty, draft, blocked (branch protection
    refuses the merge), behind (only the strict "up to date" rule refuses it), unstable (nothing
    refuses it but a status that is not required is failing or pending) or clean.
    `mergeability` is a fresh answer not stored on `pull` (see `compute_mergeability`)."""
    known = mergeability or Mergeability.stored(pull)
    if pull.merged or not pull.is_open:
        return MergeableState.UNKNOWN.value if known.mergeable is None else known.state
    if known.mergeable is None:
        return MergeableState.UNKNOWN.value
    if not known.mergeable:
        return MergeableState.DIRTY.value
    if pull.draft:
        return MergeableState.DRAFT.value
    from opencodehub.pulls import protection

    author = pull.issue.author
    try:
        _check_protection(session, settings, pull, Actor(user=author, method="system"))
    except protection.OutOfDate:
        return MergeableState.BEHIND.value
    except Forbidden:
        return MergeableState.BLOCKED.value
    if _optional_checks_not_green(session, pull):
        return MergeableState.UNSTABLE.value
    return MergeableState.CLEAN.value


def _optional_checks_not_green(session: Session, pull: PullRequest) -> bool:
    """A status on the head that is failing or pending and that no protection rule requires
    (a required one that is not green blocks the merge instead)."""
    from opencodehub.pulls import protection

    repository = session.get(Repository, pull.repository_id)
    assert repository is not None
    rule = protection.rule_for(session, repository, pull.base_ref)
    required = set(rule.context_list) if rule is not None and rule.require_status_checks else set()
    return any(
        status.state != CommitState.SUCCESS and status.context not in required
        for status in statuses.latest_by_context(session, repository, pull.head_sha)
    )


def _check_protection(
    session: Session, settings: Settings, pull: PullRequest, actor: Actor
) -> None:
    from opencodehub.pulls import protection

    try:
        protection.check_merge(session, pull, actor, settings=settings)
    except ModuleNotFoundError as exc:
        # Review data not installed in this build: only the push rules of the base apply.
        log.warning("branch protection review checks unavailable", error=str(exc))


def handle_push(
    session: Session,
    settings: Settings,
    repository_id: int,
    refs: Sequence[str],
    pusher_id: int | None,
    *,
    events: EventBus | None = None,
) -> list[PullRequest]:
    """After a push: synchronize the open pull requests whose head moved, and recompute the
    mergeability of those whose head or base moved. Returns the pull requests touched."""
    branches = [ref.removeprefix(BRANCH_PREFIX) for ref in refs if ref.startswith(BRANCH_PREFIX)]
    if not branches:
        return []
    pulls = session.scalars(
        select(PullRequest)
        .join(Issue, Issue.id == PullRequest.issue_id)
        .where(
            Issue.state == "open",
            or_(
                and_(
                    PullRequest.head_repository_id == repository_id,
                    PullRequest.head_ref.in_(branches),
                ),
                and_(
                    PullRequest.repository_id == repository_id,
                    PullRequest.base_ref.in_(branches),
                ),
            ),
        )
        .order_by(PullRequest.id)
    ).all()
    for pull in pulls:
        if pull.head_repository_id == repository_id and pull.head_ref in branches:
            synchronize(session, settings, pull, pusher_id, events=events)
        refresh_mergeability(session, settings, pull)
    return list(pulls)


# Editing ---------------------------------------------------------------------------------------


def _require_editor(
    session: Session, actor: Actor, repository: Repository, pull: PullRequest
) -> User:
    if actor.user is None:
        raise NotFound()
    authorize(session, actor, repository, Permission.READ)
    repos.ensure_writable(repository)
    if not issues.may_edit_issue(session, actor, repository, pull.issue):
        raise Forbidden("You cannot edit this pull request.")
    return actor.user


def _edit_text(
    session: Session,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    title: str | None,
    body: str | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    issue = pull.issue
    edit = getattr(issues, "update_issue", None)
    new_title = issues.validate_title(title, "PullRequest") if title is not None else None
    new_body = issues.validate_body(body, "PullRequest") if body is not None else None
    if new_title is not None and new_title != issue.title:
        changes["title"] = {"from": issue.title}
    if new_body is not None and new_body != issue.body:
        changes["body"] = {"from": issue.body}
    if not changes:
        return changes
    if edit is not None:
        fields: dict[str, Any] = {}
        if "title" in changes:
            fields["title"] = new_title
        if "body" in changes:
            fields["body"] = new_body
        edit(session, actor, repository, issue, **fields)
    else:
        if "title" in changes and new_title is not None:
            issue.title = new_title
        if "body" in changes and new_body is not None:
            issue.body = new_body
        issue.updated_at = utcnow()
    return changes


def change_base(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    base: str,
) -> bool:
    """Point the pull request at another base branch (write access). True when it changed."""
    if base == pull.base_ref:
        return False
    authorize(session, actor, repository, Permission.WRITE)
    if not pull.is_open:
        raise _custom("Cannot change the base branch of a closed pull request.")
    git = git_of(settings, repository)
    base_sha = _branch_sha(git, base)
    if base_sha is None:
        raise ValidationFailed(
            FieldError("PullRequest", "base", "invalid", "Proposed base branch was not found")
        )
    if pull.head_repository_id == repository.id and base == pull.head_ref:
        raise _custom("The base and head branches must differ.")
    if merge.merge_base(git, base_sha, pull.head_sha) is None:
        raise _custom(f"The {base} branch has no history in common with {pull.head_ref}.")
    if session.scalar(
        select(PullRequest.id)
        .join(Issue, Issue.id == PullRequest.issue_id)
        .where(
            PullRequest.repository_id == repository.id,
            PullRequest.head_repository_id == pull.head_repository_id,
            PullRequest.head_ref == pull.head_ref,
            PullRequest.base_ref == base,
            PullRequest.id != pull.id,
            Issue.state == "open",
        )
    ):
        raise _custom(f"A pull request already exists for {head_label(session, pull)}.")
    _record_move(session, pull, actor.user_id, "base", base, pull.base_ref, base, False)
    pull.base_ref = base
    _refresh_counts(git, pull, base_sha)
    pull.mergeable = None
    pull.mergeability_key = None
    pull.mergeable_state = MergeableState.UNKNOWN.value
    return True


def update_pull(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    title: str | None = None,
    body: str | None = None,
    state: str | None = None,
    base: str | None = None,
    maintainer_can_modify: bool | None = None,
    events: EventBus | None = None,
) -> PullRequest:
    """GitHub's `PATCH /pulls/{n}`: title, body, state (close/reopen), base, and
    maintainer_can_modify. Everything is checked before anything is written."""
    _require_editor(session, actor, repository, pull)
    if state is not None and state not in ("open", "closed"):
        raise ValidationFailed.invalid("PullRequest", "state", "state must be open or closed")
    if state == "open" and pull.merged:
        raise _custom("Cannot reopen a merged pull request.")
    changes = _edit_text(session, actor, repository, pull, title, body)
    if base is not None:
        previous = pull.base_ref
        if change_base(session, settings, actor, repository, pull, base):
            changes["base"] = {"ref": {"from": previous}, "sha": {"from": pull.base_sha}}
    if maintainer_can_modify is not None:
        pull.maintainer_can_modify = bool(maintainer_can_modify)
    if state is not None and state != pull.state:
        if state == "closed":
            close_pull(session, settings, actor, repository, pull, events=events)
        else:
            reopen_pull(session, settings, actor, repository, pull, events=events)
    if changes:
        pull.issue.updated_at = utcnow()
        _publish(session, events, "edited", pull, actor, changes=list(changes))
    session.flush()
    return pull


def close_pull(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    events: EventBus | None = None,
) -> PullRequest:
    if not pull.is_open:
        return pull
    issues.set_state(session, actor, repository, pull.issue, "closed")
    pull.auto_merge_method = None
    pull.auto_merge_enabled_by_id = None
    _publish(session, events, "closed", pull, actor)
    return pull


def reopen_pull(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    events: EventBus | None = None,
) -> PullRequest:
    if pull.is_open:
        return pull
    if pull.merged:
        raise _custom("Cannot reopen a merged pull request.")
    head_sha = live_head_sha(settings, pull)
    if head_sha is None:
        raise _custom("The head branch of this pull request no longer exists.")
    if _open_duplicate(
        session,
        repository,
        session.get(Repository, pull.head_repository_id),  # type: ignore[arg-type]
        pull.head_ref,
        pull.base_ref,
    ):
        raise _custom(f"A pull request already exists for {head_label(session, pull)}.")
    issues.set_state(session, actor, repository, pull.issue, "open")
    synchronize(session, settings, pull, actor.user_id, events=events)
    refresh_mergeability(session, settings, pull, force=True)
    _publish(session, events, "reopened", pull, actor)
    return pull


def set_draft(
    session: Session,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    draft: bool,
    *,
    events: EventBus | None = None,
) -> PullRequest:
    """Mark ready for review (draft False) or convert to draft: the author or a writer."""
    _require_editor(session, actor, repository, pull)
    if not pull.is_open:
        raise _custom("Only open pull requests can change their draft state.")
    if pull.draft == draft:
        return pull
    pull.draft = draft
    pull.issue.updated_at = utcnow()
    session.flush()
    _publish(session, events, "converted_to_draft" if draft else "ready_for_review", pull, actor)
    return pull


# Merging ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeResult:
    sha: str
    merged: bool
    message: str


def _signature(settings: Settings, user: User) -> pygit2.Signature:
    return repos._signature_for(user, settings)


def _commit_messages(git: pygit2.Repository, pull: PullRequest) -> list[str]:
    base = pull.merge_base_sha or pull.base_sha
    return [commit.message for commit in merge.commits_between(git, base, pull.head_sha)]


def _merge_message(
    session: Session,
    git: pygit2.Repository,
    pull: PullRequest,
    method: MergeMethod,
    title: str | None,
    message: str | None,
) -> str:
    if method == MergeMethod.MERGE:
        head_repository = (
            session.get(Repository, pull.head_repository_id) if pull.head_repository_id else None
        )
        owner = head_repository.owner.username if head_repository else "unknown"
        default_title = f"Merge pull request #{pull.number} from {owner}/{pull.head_ref}"
        default_message = pull.issue.title
    else:
        default_title = f"{pull.issue.title} (#{pull.number})"
        default_message = "\n\n".join(
            "* " + text.strip().replace("\n", "\n  ") for text in _commit_messages(git, pull)
        )
    subject = (title if title is not None else default_title).strip() or default_title
    text = message if message is not None else default_message
    return f"{subject}\n\n{text.strip()}\n" if text.strip() else f"{subject}\n"


def _validate_method(method: str | None) -> MergeMethod:
    try:
        return MergeMethod(method or "merge")
    except ValueError:
        raise ValidationFailed.invalid(
            "PullRequest", "merge_method", "must be one of merge, squash, rebase"
        ) from None


def merge_pull(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    method: str | None = None,
    sha: str | None = None,
    commit_title: str | None = None,
    commit_message: str | None = None,
    delete_branch: bool | None = None,
    events: EventBus | None = None,
) -> MergeResult:
    """Merge now (GitHub's `PUT /pulls/{n}/merge`): checks, the commit, then the base moved
    with compare-and-swap as the last step. Raises NotMergeable (405), Conflict (409: the head
    was not `sha`, or the base moved meanwhile), Forbidden (no write access).

    Events wait for the commit; when the merge fails they are cancelled, so a caller that rolls
    back to a savepoint and commits the rest publishes nothing about a merge that did not
    happen."""
    guard = _GuardedBus(events) if events is not None else None
    try:
        return _merge_pull(
            session,
            settings,
            actor,
            repository,
            pull,
            method=method,
            sha=sha,
            commit_title=commit_title,
            commit_message=commit_message,
            delete_branch=delete_branch,
            events=guard,
        )
    except BaseException:
        if guard is not None:
            guard.cancelled = True
        raise


class _GuardedBus(EventBus):
    """Hands events to the real bus unless cancelled."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__()
        self.bus = bus
        self.cancelled = False

    def publish(self, event_name: str, payload: dict[str, Any]) -> None:
        if not self.cancelled:
            self.bus.publish(event_name, payload)


def _merge_pull(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    method: str | None,
    sha: str | None,
    commit_title: str | None,
    commit_message: str | None,
    delete_branch: bool | None,
    events: EventBus | None,
) -> MergeResult:
    user = actor.user
    if user is None:
        raise NotFound()
    authorize(session, actor, repository, Permission.WRITE)
    repos.ensure_writable(repository)
    chosen = _validate_method(method)
    if pull.merged or not pull.is_open:
        raise NotMergeable()
    if pull.draft:
        raise NotMergeable("Pull Request is still a draft")
    if not merge_settings(session, repository).allows(chosen):
        raise NotMergeable(METHOD_NOT_ALLOWED[chosen])
    # A push the background job has not handled yet: catch up first.
    if live_head_sha(settings, pull) is None:
        raise NotMergeable("Pull Request is not mergeable: its head branch no longer exists.")
    synchronize(session, settings, pull, None, events=events)
    if sha is not None and sha != pull.head_sha:
        raise Conflict(HEAD_MODIFIED)
    git = git_of(settings, repository)
    base_ref = f"{BRANCH_PREFIX}{pull.base_ref}"
    base_sha = _branch_sha(git, pull.base_ref)
    if base_sha is None:
        raise NotMergeable("Pull Request is not mergeable: its base branch no longer exists.")
    if base_sha != pull.base_sha:
        _refresh_counts(git, pull, base_sha)
    try:
        _check_protection(session, settings, pull, actor)
    except Forbidden as exc:
        raise NotMergeable(exc.message) from exc
    committer = _signature(settings, user)
    try:
        if chosen == MergeMethod.MERGE:
            new_sha = merge.create_merge_commit(
                git,
                base_sha,
                pull.head_sha,
                _merge_message(session, git, pull, chosen, commit_title, commit_message),
                committer,
                committer,
            )
        elif chosen == MergeMethod.SQUASH:
            author = pull.issue.author or user
            new_sha = merge.create_squash_commit(
                git,
                base_sha,
                pull.head_sha,
                _merge_message(session, git, pull, chosen, commit_title, commit_message),
                _signature(settings, author),
                committer,
            )
        else:
            new_sha = merge.rebase_commits(git, base_sha, pull.head_sha, committer)
    except merge.MergeConflict as exc:
        pull.mergeable = False
        pull.conflicting_files = exc.paths
        pull.mergeable_state = MergeableState.DIRTY.value
        pull.mergeability_key = f"{base_sha}:{pull.head_sha}"
        raise NotMergeable() from exc
    from opencodehub.pulls import protection

    try:
        protection.check_ref_update(
            session, repository, actor, base_ref, base_sha, new_sha, via="merge", git_repo=git
        )
    except Forbidden as exc:
        raise NotMergeable(exc.message) from exc
    messages = [pull.issue.title, pull.issue.body or "", *_commit_messages(git, pull)]

    # Every record first; the ref moves last, so a lost race rolls all of them back.
    now = utcnow()
    pull.merged = True
    pull.merged_at = now
    pull.merged_by_id = user.id
    pull.merge_commit_sha = new_sha
    pull.mergeable = True
    pull.mergeable_state = MergeableState.CLEAN.value
    pull.auto_merge_method = None
    pull.auto_merge_enabled_by_id = None
    issues.record_event(session, pull.issue, user, "merged", {"commit_id": new_sha})
    issues.set_state(session, actor, repository, pull.issue, "closed")
    issues.close_by_keywords(
        session, repository, actor, messages, closed_by_user=user, pull_request=pull.issue
    )
    record_push(
        session,
        settings,
        repository,
        actor,
        [RefUpdate(base_ref, base_sha, new_sha)],
        events=events,
    )
    session.flush()
    try:
        merge.update_ref(settings, repository.id, base_ref, new_sha, base_sha)
    except merge.RefMoved as exc:
        raise Conflict(BASE_MODIFIED) from exc
    if delete_branch or (
        delete_branch is None and merge_settings(session, repository).delete_branch_on_merge
    ):
        _delete_head_branch(session, settings, actor, pull, events=events)
    _publish(session, events, "closed", pull, actor)
    return MergeResult(new_sha, True, "Pull Request successfully merged")


def _delete_head_branch(
    session: Session,
    settings: Settings,
    actor: Actor,
    pull: PullRequest,
    *,
    events: EventBus | None,
) -> bool:
    """Delete the merged head branch when the actor may and the branch is still where it was
    merged; anything else (protected, default branch, moved) leaves it, without failing the
    merge."""
    if pull.head_repository_id is None:
        return False
    head_repository = session.get(Repository, pull.head_repository_id)
    if head_repository is None or head_repository.default_branch == pull.head_ref:
        return False
    if not can(session, actor, head_repository, Permission.WRITE) or head_repository.is_archived:
        return False
    ref = f"{BRANCH_PREFIX}{pull.head_ref}"
    from opencodehub.pulls import protection

    try:
        protection.check_ref_update(
            session, head_repository, actor, ref, pull.head_sha, merge.ZERO_SHA, via="api"
        )
    except Forbidden:
        return False
    try:
        merge.update_ref(settings, head_repository.id, ref, merge.ZERO_SHA, pull.head_sha)
    except merge.RefMoved:
        return False
    record_push(
        session,
        settings,
        head_repository,
        actor,
        [RefUpdate(ref, pull.head_sha, merge.ZERO_SHA)],
        events=events,
    )
    issues.record_event(session, pull.issue, actor.user, "head_ref_deleted")
    return True


def delete_head_branch(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    events: EventBus | None = None,
) -> bool:
    """The "Delete branch" button of a merged or closed pull request."""
    authorize(session, actor, repository, Permission.READ)
    if pull.is_open:
        raise _custom("Close or merge the pull request before deleting its branch.")
    if live_head_sha(settings, pull) != pull.head_sha:
        return False
    return _delete_head_branch(session, settings, actor, pull, events=events)


# Auto-merge ------------------------------------------------------------------------------------


def enable_auto_merge(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    *,
    method: str | None = None,
    commit_title: str | None = None,
    commit_message: str | None = None,
    events: EventBus | None = None,
) -> MergeResult | None:
    """Merge as soon as branch protection is satisfied. If it already is, merge now and return
    the result; otherwise remember the request and return None."""
    authorize(session, actor, repository, Permission.WRITE)
    chosen = _validate_method(method)
    if pull.merged or not pull.is_open:
        raise NotMergeable()
    if not merge_settings(session, repository).allow_auto_merge:
        raise _custom("Auto-merge is not allowed for this repository.")
    if not merge_settings(session, repository).allows(chosen):
        raise NotMergeable(METHOD_NOT_ALLOWED[chosen])
    pull.auto_merge_method = chosen.value
    pull.auto_merge_enabled_by_id = actor.user_id
    pull.auto_merge_commit_title = commit_title
    pull.auto_merge_commit_message = commit_message
    session.flush()
    return None


def disable_auto_merge(
    session: Session, actor: Actor, repository: Repository, pull: PullRequest
) -> None:
    authorize(session, actor, repository, Permission.WRITE)
    pull.auto_merge_method = None
    pull.auto_merge_enabled_by_id = None
    pull.auto_merge_commit_title = None
    pull.auto_merge_commit_message = None
    session.flush()


def try_auto_merge(
    session: Session, settings: Settings, pull: PullRequest, *, events: EventBus | None = None
) -> MergeResult | None:
    """Merge a pull request with auto-merge on, if it can be merged now; None while it waits.
    The merge runs as the user who enabled auto-merge (their access is checked again)."""
    if pull.auto_merge_method is None or not pull.is_open or pull.merged or pull.draft:
        return None
    user = pull.auto_merge_enabled_by
    repository = session.get(Repository, pull.repository_id)
    if user is None or not user.is_active or repository is None:
        pull.auto_merge_method = None
        return None
    actor = Actor(user=user, method="system")
    refresh_mergeability(session, settings, pull)
    if not pull.mergeable:
        return None
    try:
        _check_protection(session, settings, pull, actor)
    except Forbidden:
        return None
    try:
        with session.begin_nested():
            return merge_pull(
                session,
                settings,
                actor,
                repository,
                pull,
                method=pull.auto_merge_method,
                commit_title=pull.auto_merge_commit_title,
                commit_message=pull.auto_merge_commit_message,
                events=events,
            )
    except (NotMergeable, Conflict, Forbidden, NotFound) as exc:
        log.info("auto-merge waits", pull_request_id=pull.id, reason=str(exc))
        return None


def auto_merge_candidates(session: Session, limit: int = 100) -> list[int]:
    return list(
        session.scalars(
            select(PullRequest.id)
            .join(Issue, Issue.id == PullRequest.issue_id)
            .where(PullRequest.auto_merge_method.is_not(None), Issue.state == "open")
            .order_by(PullRequest.id)
            .limit(limit)
        )
    )


# Commits, files, diff --------------------------------------------------------------------------


def _range(pull: PullRequest) -> tuple[str, str]:
    return pull.merge_base_sha or pull.base_sha, pull.head_sha


def pull_commits(git: pygit2.Repository, pull: PullRequest) -> list[browse.CommitInfo]:
    """The pull request's commits, oldest first (at most 250, as on GitHub)."""
    base, head = _range(pull)
    commits = merge.commits_between(git, base, head)[:MAX_PR_COMMITS]
    return [browse.commit_info(commit) for commit in commits]


def _pr_diff(git: pygit2.Repository, pull: PullRequest) -> pygit2.Diff:
    base, head = _range(pull)
    old = git.get(base)
    new = git.get(head)
    assert isinstance(old, pygit2.Commit) and isinstance(new, pygit2.Commit)
    diff = git.diff(old.tree, new.tree)
    diff.find_similar()
    return diff


def pull_trees(git: pygit2.Repository, pull: PullRequest) -> tuple[pygit2.Tree, pygit2.Tree]:
    base, head = _range(pull)
    old = git.get(base)
    new = git.get(head)
    assert isinstance(old, pygit2.Commit) and isinstance(new, pygit2.Commit)
    return old.tree, new.tree


def pull_files(
    git: pygit2.Repository, pull: PullRequest, page: Page
) -> tuple[list[browse.FileChange], int]:
    """One page of the changed files with their patches (only that page's patches are made),
    and how many files can be listed in all (at most 3,000, as on GitHub)."""
    diff = _pr_diff(git, pull)
    total = min(len(diff), MAX_PR_FILES)
    start = min(page.offset, total)
    end = min(start + page.per_page, total)
    files: list[browse.FileChange] = []
    for index in range(start, end):
        patch = diff[index]
        if patch is None:
            continue
        delta = patch.delta
        status = diffview.file_status(delta)
        _, additions, deletions = patch.line_stats
        text: str | None = None
        if not delta.is_binary:
            raw = patch.data
            if len(raw) <= browse.MAX_PATCH_BYTES:
                text = browse._hunks_only(browse._decode(raw)) or None
        removed = status == "removed"
        files.append(
            browse.FileChange(
                filename=browse._decode(
                    delta.old_file.raw_path if removed else delta.new_file.raw_path
                ),
                status=status,
                additions=additions,
                deletions=deletions,
                blob_sha=str(delta.old_file.id if removed else delta.new_file.id),
                previous_filename=browse._decode(delta.old_file.raw_path)
                if status in ("renamed", "copied")
                else None,
                patch=text,
            )
        )
    return files, total


def _checked_range(git: pygit2.Repository, pull: PullRequest) -> tuple[str, str]:
    """The diff range, both ends checked to be commits here before a response starts (a
    streamed body cannot turn into an error once sent)."""
    base, head = _range(pull)
    for sha in (base, head):
        if not isinstance(git.get(sha), pygit2.Commit):
            raise NotFound()
    return base, head


# git's own output, never its user or repository configuration: no external diff, no textconv
# filter, no colour, renames found as GitHub shows them.
_DIFF_OPTIONS = ["--no-color", "--no-ext-diff", "--no-textconv", "-M"]


def stream_diff(settings: Settings, git: pygit2.Repository, pull: PullRequest) -> Iterator[bytes]:
    """The whole pull request as one unified diff (`application/vnd.github.diff`), streamed
    from `git diff merge-base head`."""
    base, head = _checked_range(git, pull)
    return browse.stream_git_output(
        settings, git, ["diff", *_DIFF_OPTIONS, "--end-of-options", base, head]
    )


def stream_patch(settings: Settings, git: pygit2.Repository, pull: PullRequest) -> Iterator[bytes]:
    """Every commit as a `git format-patch` mail (`application/vnd.github.patch`), streamed;
    merge commits are left out, as format-patch leaves them out."""
    base, head = _checked_range(git, pull)
    return browse.stream_git_output(
        settings,
        git,
        [
            "format-patch",
            "--stdout",
            "--no-signature",
            *_DIFF_OPTIONS,
            "--end-of-options",
            f"{base}..{head}",
        ],
    )


# Viewed files ----------------------------------------------------------------------------------


def _path_hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


def _blob_at(git: pygit2.Repository, sha: str, path: str) -> str | None:
    commit = git.get(sha)
    if not isinstance(commit, pygit2.Commit):
        return None
    try:
        return str(commit.tree[path].id)
    except KeyError:
        return None


def set_viewed(
    session: Session,
    settings: Settings,
    actor: Actor,
    repository: Repository,
    pull: PullRequest,
    path: str,
    viewed: bool,
) -> None:
    """Mark or unmark a file as viewed for the signed-in reader."""
    if actor.user is None:
        raise NotFound()
    authorize(session, actor, repository, Permission.READ)
    path = browse.normalize_path(path)
    existing = session.scalar(
        select(FileViewed).where(
            FileViewed.pull_request_id == pull.id,
            FileViewed.user_id == actor.user.id,
            FileViewed.path_hash == _path_hash(path),
        )
    )
    if not viewed:
        if existing is not None:
            session.delete(existing)
        session.flush()
        return
    blob = _blob_at(git_of(settings, repository), pull.head_sha, path) or merge.ZERO_SHA
    if existing is not None:
        existing.blob_sha = blob
    else:
        session.add(
            FileViewed(
                pull_request_id=pull.id,
                user_id=actor.user.id,
                path_hash=_path_hash(path),
                path=path,
                blob_sha=blob,
                created_at=utcnow(),
            )
        )
    session.flush()


def viewed_paths(session: Session, actor: Actor, pull: PullRequest) -> set[str]:
    if actor.user is None:
        return set()
    return set(
        session.scalars(
            select(FileViewed.path).where(
                FileViewed.pull_request_id == pull.id, FileViewed.user_id == actor.user.id
            )
        )
    )


def _clear_stale_views(session: Session, git: pygit2.Repository, pull: PullRequest) -> None:
    """A file changed by a new push is no longer "viewed" (its blob differs)."""
    rows = session.scalars(select(FileViewed).where(FileViewed.pull_request_id == pull.id)).all()
    for row in rows:
        if (_blob_at(git, pull.head_sha, row.path) or merge.ZERO_SHA) != row.blob_sha:
            session.delete(row)


def head_pushes(session: Session, pull: PullRequest) -> list[PullRequestPush]:
    return list(
        session.scalars(
            select(PullRequestPush)
            .where(PullRequestPush.pull_request_id == pull.id)
            .order_by(PullRequestPush.created_at, PullRequestPush.id)
        )
    )


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
