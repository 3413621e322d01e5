"""Pushes: the policy a push must pass (pre-receive) and the bookkeeping after it (post-receive).

Both are called by the internal channel the git hooks reach (`git/internal.py`), and may be
called by any other code that moves refs (the contents API, merges), so every way into a
repository obeys the same rules and leaves the same records.

Ancestry during pre-receive: the pushed objects are still in receive-pack's quarantine directory
(`objects/tmp_objdir-incoming-*`), invisible to a plain open of the repository. The hook sends
`GIT_QUARANTINE_PATH` and the app adds that directory as an alternate object store of its own
pygit2 handle (`open_pushed_objects`), after checking it lies inside the repository's own
`objects/`. So one libgit2 process-local walk answers every ref of the push, rather than one
`git merge-base --is-ancestor` process per ref in the hook, and the decision stays in the app.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pygit2
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden
from opencodehub.core.events import EventBus
from opencodehub.core.logging import get_logger
from opencodehub.core.time import isoformat, utcnow
from opencodehub.db import transaction
from opencodehub.db.engine import Database
from opencodehub.repos import store
from opencodehub.repos.models import CommitRecord, PushRecord, Repository

log = get_logger("opencodehub.pushes")

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"
# Refs the server writes itself (pull request heads and merges); clients may not push there.
RESERVED_REF_PREFIXES = ("refs/pull/",)
ARCHIVED_MESSAGE = "This repository was archived so it is read-only."

# Commits indexed inside the push's own transaction; past this, the rest is indexed in chunks
# after the hook has answered (an import of a large history must not hold the push open).
COMMIT_INDEX_PUSH_LIMIT = 10_000
COMMIT_INDEX_BATCH = 500
COMMIT_INDEX_CHUNK = 5_000

PUSH_EVENT = "push"

Pusher = Actor | User | None


def is_zero_sha(sha: str) -> bool:
    return not sha.strip("0")


@dataclass(frozen=True)
class RefUpdate:
    """One line of what receive-pack hands its hooks; the zero sha stands for "no ref"."""

    ref: str
    old_sha: str
    new_sha: str

    @property
    def is_create(self) -> bool:
        return is_zero_sha(self.old_sha)

    @property
    def is_delete(self) -> bool:
        return is_zero_sha(self.new_sha)

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix(BRANCH_PREFIX) if self.ref.startswith(BRANCH_PREFIX) else None


def _pusher_user_id(pusher: Pusher) -> int | None:
    if isinstance(pusher, Actor):
        return pusher.user_id
    if isinstance(pusher, User):
        return pusher.id
    return None


def _pusher_name(pusher: Pusher) -> str | None:
    user = pusher.user if isinstance(pusher, Actor) else pusher
    return user.username if user is not None else None


# Pre-receive ------------------------------------------------------------------------------------


def open_pushed_objects(
    settings: Settings, repository_id: int, quarantine_path: str | None
) -> pygit2.Repository:
    """The repository, seeing the objects of a push still in quarantine. A quarantine path
    outside the repository's own `objects/` is refused (ValueError)."""
    repo_path = store.repository_path(settings, repository_id)
    git_repo = pygit2.Repository(str(repo_path))
    if quarantine_path:
        candidate = Path(quarantine_path).resolve()
        objects_dir = (repo_path / "objects").resolve()
        if (
            candidate.parent != objects_dir
            or not candidate.name.startswith("tmp_objdir-incoming-")
            or not candidate.is_dir()
        ):
            raise ValueError("the quarantine directory is not this repository's")
        git_repo.odb.add_disk_alternate(str(candidate))
    return git_repo


def _is_fast_forward(git_repo: pygit2.Repository, old_sha: str, new_sha: str) -> bool:
    if old_sha == new_sha:
        return True
    try:
        return git_repo.descendant_of(new_sha, old_sha)
    except (KeyError, ValueError, pygit2.GitError):
        # Either side missing (or not a commit) cannot be shown to be a fast-forward.
        return False


def check_push(
    session: Session,
    repository: Repository,
    pusher: Pusher,
    updates: Sequence[RefUpdate],
    *,
    git_repo: pygit2.Repository,
    via: str = "push",
) -> None:
    """Raise Forbidden, with a one-line reason git shows the pusher, unless every update may
    happen. `git_repo` must see the pushed objects (`open_pushed_objects` during pre-receive).
    Branch protection is decided by `pulls.protection.check_ref_update`, the one place every
    ref update goes through."""
    from opencodehub.pulls.protection import check_ref_update

    if repository.is_archived:
        raise Forbidden(ARCHIVED_MESSAGE)
    for update in updates:
        if update.ref.startswith(RESERVED_REF_PREFIXES):
            raise Forbidden(f"{update.ref} is managed by the server and cannot be pushed to.")
        check_ref_update(
            session,
            repository,
            pusher,
            update.ref,
            update.old_sha,
            update.new_sha,
            via=via,
            git_repo=git_repo,
        )


# Post-receive -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexContinuation:
    """What is left to index after a push hit the per-push cap."""

    repository_id: int
    tips: tuple[str, ...]
    hidden: tuple[str, ...]


@dataclass
class PushResult:
    records: list[PushRecord] = field(default_factory=list)
    commits_indexed: int = 0
    pending_index: IndexContinuation | None = None


def _text(raw: bytes, limit: int) -> str:
    # PostgreSQL refuses NUL in text; names from git are bytes in any encoding.
    return raw.decode("utf-8", "replace").replace("\x00", "")[:limit]


def _when(signature: pygit2.Signature) -> datetime:
    return datetime.fromtimestamp(signature.time, UTC)


def _commit_row(repository_id: int, commit: pygit2.Commit) -> dict[str, object]:
    author, committer = commit.author, commit.committer
    message = commit.raw_message if hasattr(commit, "raw_message") else commit.message.encode()
    summary = message.split(b"\n", 1)[0].strip()
    return {
        "repository_id": repository_id,
        "sha": str(commit.id),
        "author_name": _text(author.raw_name, 255),
        "author_email": _text(author.raw_email, 255),
        "authored_at": _when(author),
        "committer_name": _text(committer.raw_name, 255),
        "committer_email": _text(committer.raw_email, 255),
        "committed_at": _when(committer),
        "summary": _text(summary, 1024),
    }


def _commit_ids(git_repo: pygit2.Repository, shas: Iterable[str]) -> list[str]:
    """The commits `shas` name (tags peeled); what is gone or not a commit is left out."""
    found: list[str] = []
    seen: set[str] = set()
    for sha in shas:
        try:
            commit_id = str(git_repo[sha].peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError):
            continue
        if commit_id not in seen:
            seen.add(commit_id)
            found.append(commit_id)
    return found


def _new_commits(
    settings: Settings, git_repo: pygit2.Repository, tips: Iterable[str], hidden: Iterable[str]
) -> Iterator[pygit2.Commit]:
    """Commits reachable from `tips` and from none of `hidden`, newest first.

    `git rev-list` does the walk: it stops as soon as every commit left is reachable from a
    hidden one, using the commit-graph's generation numbers where there is one. A libgit2
    walker hiding every other branch tip walks far back into the history instead (seconds on
    a large repository for a two-commit push). The caller may stop early: closing the
    generator ends the process."""
    wanted = _commit_ids(git_repo, tips)
    if not wanted:
        return
    unwanted = _commit_ids(git_repo, hidden)
    repo_path = Path(git_repo.path)
    # Full hexadecimal ids only (peeled above): nothing user-typed reaches the command line.
    lines = "".join(f"{sha}\n" for sha in wanted) + "".join(f"^{sha}\n" for sha in unwanted)
    process = subprocess.Popen(
        ["git", "rev-list", "--stdin"],
        cwd=repo_path,
        env=store.git_environment(settings, repo_path, {"GIT_DIR": str(repo_path)}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    # git reads all of stdin before it prints anything; a thread feeds a large list of
    # hidden tips so neither side waits on the other's full pipe.
    feeder = threading.Thread(target=_feed, args=(process.stdin, lines.encode()), daemon=True)
    feeder.start()
    finished = False
    try:
        for line in process.stdout:
            yield git_repo[line.strip().decode()].peel(pygit2.Commit)
        finished = True
    finally:
        if not finished:
            process.kill()
        process.stdout.close()
        stderr = process.stderr.read() if process.stderr else b""
        if process.stderr:
            process.stderr.close()
        code = process.wait()
        feeder.join()
        if finished and code != 0:
            raise RuntimeError(f"git rev-list failed: {stderr.decode(errors='replace')[-500:]}")


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError):
        pass  # the walk was stopped early
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _insert_batch(session: Session, repository_id: int, rows: list[dict[str, object]]) -> int:
    """Insert the rows whose sha the index lacks; a concurrent push inserting the same commits
    costs one retry, never a failure."""
    for _attempt in range(3):
        shas = [row["sha"] for row in rows]
        existing = set(
            session.scalars(
                select(CommitRecord.sha).where(
                    CommitRecord.repository_id == repository_id, CommitRecord.sha.in_(shas)
                )
            )
        )
        missing = [row for row in rows if row["sha"] not in existing]
        if not missing:
            return 0
        try:
            with session.begin_nested():
                session.execute(insert(CommitRecord), missing)
        except IntegrityError:
            continue
        return len(missing)
    raise RuntimeError("commit index rows kept conflicting with concurrent inserts")


def index_commits(
    session: Session,
    settings: Settings,
    git_repo: pygit2.Repository,
    repository_id: int,
    tips: Iterable[str],
    hidden: Iterable[str],
    *,
    limit: int | None = None,
) -> tuple[int, bool]:
    """Add the commits reachable from `tips` but not from `hidden` to the commit index, in
    batches. Returns (rows inserted, walk complete); stops after `limit` commits walked."""
    inserted = 0
    walked = 0
    with contextlib.closing(_new_commits(settings, git_repo, tips, hidden)) as walk:
        commits = walk if limit is None else itertools.islice(walk, limit + 1)
        for batch in _batches(repository_id, commits, COMMIT_INDEX_BATCH):
            if limit is not None and walked + len(batch) > limit:
                # One commit past the cap was read to learn that the walk goes on.
                if limit > walked:
                    inserted += _insert_batch(session, repository_id, batch[: limit - walked])
                return inserted, False
            walked += len(batch)
            inserted += _insert_batch(session, repository_id, batch)
    return inserted, True


def _batches(
    repository_id: int, commits: Iterable[pygit2.Commit], size: int
) -> Iterator[list[dict[str, object]]]:
    """The index rows of `commits`, `size` at a time: one batch is all that is ever held."""
    batch: list[dict[str, object]] = []
    for commit in commits:
        batch.append(_commit_row(repository_id, commit))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def continue_commit_index(
    database: Database, settings: Settings, continuation: IndexContinuation
) -> int:
    """Finish a capped index: walk again and insert what is missing, one transaction per chunk
    of COMMIT_INDEX_CHUNK commits, so a huge import is indexed without one giant transaction.
    Each batch is inserted as soon as it is read, so a chunk's rows (5,000 of them, a few MB
    with their names and summaries) are never all in memory at once. Returns rows inserted."""
    repository_id = continuation.repository_id
    git_repo = store.open_repository(settings, repository_id)
    total = 0
    batches_per_chunk = max(1, COMMIT_INDEX_CHUNK // COMMIT_INDEX_BATCH)
    try:
        walk = _new_commits(settings, git_repo, continuation.tips, continuation.hidden)
        with contextlib.closing(walk):
            batches = _batches(repository_id, walk, COMMIT_INDEX_BATCH)
            rows = next(batches, None)
            while rows is not None:
                with database.session() as session:
                    for _ in range(batches_per_chunk):
                        total += _insert_batch(session, repository_id, rows)
                        rows = next(batches, None)
                        if rows is None:
                            break
    finally:
        git_repo.free()
    log.info("commit index completed", repository_id=repository_id, inserted=total)
    return total


def _branch_tips(git_repo: pygit2.Repository) -> dict[str, str]:
    tips: dict[str, str] = {}
    for name in git_repo.references:
        if name.startswith(BRANCH_PREFIX):
            try:
                tips[name] = str(git_repo.references[name].resolve().target)
            except (KeyError, pygit2.GitError):
                continue
    return tips


def _choose_default_branch(current: str, pushed: list[str]) -> str:
    """GitHub makes the first pushed branch the default of an empty repository, preferring the
    configured default, then `main` and `master`, when several arrive together."""
    for preferred in (current, "main", "master"):
        if preferred in pushed:
            return preferred
    return pushed[0]


def record_push(
    session: Session,
    settings: Settings,
    repository: Repository,
    pusher: Pusher,
    updates: Sequence[RefUpdate],
    *,
    events: EventBus | None = None,
) -> PushResult:
    """Bookkeeping after refs moved: push records, the commit index, the repository's state, and
    a `push` event published once the caller's transaction commits."""
    git_repo = store.open_repository(settings, repository.id)
    try:
        return _record_push(session, settings, git_repo, repository, pusher, updates, events)
    finally:
        # A repository sits in a reference cycle: without this, its object cache (the commits
        # and trees the index just read) and its mapped packs stay until a cyclic collection.
        git_repo.free()


def _record_push(
    session: Session,
    settings: Settings,
    git_repo: pygit2.Repository,
    repository: Repository,
    pusher: Pusher,
    updates: Sequence[RefUpdate],
    events: EventBus | None,
) -> PushResult:
    now = utcnow()
    pusher_id = _pusher_user_id(pusher)
    result = PushResult()
    event_updates: list[dict[str, object]] = []
    for update in updates:
        forced = (
            not update.is_create
            and not update.is_delete
            and not _is_fast_forward(git_repo, update.old_sha, update.new_sha)
        )
        record = PushRecord(
            repository_id=repository.id,
            pusher_id=pusher_id,
            ref=update.ref,
            old_sha=update.old_sha,
            new_sha=update.new_sha,
            forced=forced,
            pushed_at=now,
        )
        session.add(record)
        result.records.append(record)
        event_updates.append(
            {
                "ref": update.ref,
                "before": update.old_sha,
                "after": update.new_sha,
                "created": update.is_create,
                "deleted": update.is_delete,
                "forced": forced,
            }
        )

    tips_now = _branch_tips(git_repo)
    pushed_branches = [
        update for update in updates if update.branch is not None and not update.is_delete
    ]
    updated_refs = {update.ref for update in updates}
    hidden = [sha for ref, sha in tips_now.items() if ref not in updated_refs]
    hidden += [u.old_sha for u in updates if u.branch is not None and not u.is_create]
    tips = [update.new_sha for update in pushed_branches]
    inserted, complete = index_commits(
        session, settings, git_repo, repository.id, tips, hidden, limit=COMMIT_INDEX_PUSH_LIMIT
    )
    result.commits_indexed = inserted
    if not complete:
        result.pending_index = IndexContinuation(repository.id, tuple(tips), tuple(hidden))

    if repository.is_empty and pushed_branches:
        names = [update.branch for update in pushed_branches if update.branch]
        if f"{BRANCH_PREFIX}{repository.default_branch}" not in tips_now:
            repository.default_branch = _choose_default_branch(repository.default_branch, names)
            git_repo.set_head(f"{BRANCH_PREFIX}{repository.default_branch}")
    repository.is_empty = not tips_now
    repository.pushed_at = now
    repository.size_kb = store.disk_usage_kb(settings, repository.id)
    session.flush()

    if events is not None:
        payload = {
            "repository_id": repository.id,
            "repository": repository.full_name,
            "pusher_id": pusher_id,
            "pusher": _pusher_name(pusher),
            "pushed_at": isoformat(now),
            "updates": event_updates,
            "commits_indexed": inserted,
        }
        transaction.after_commit(session, lambda: events.publish(PUSH_EVENT, payload))
    return result
