"""The last commit touching each entry of a tree: the costly column of a repository home.

One history walk per (commit, directory), newest committer date first, that stops as soon as
every entry is resolved. Each commit in the walk carries the set of entries it is still
responsible for; for each of them the walk asks git's question of history simplification: is
the entry the same in a parent (TREESAME)? Then the parent inherits it (the first such parent,
as `git log -- path` follows); when no parent has it unchanged, this commit is the answer. When
the directory's tree is identical in a parent, everything passes down with one comparison, so
only commits that touch the directory cost more than an id comparison.

Results are cached by (repository id, commit sha, directory), in this process (LRU) and in Redis
when configured. A commit id names immutable history, so nothing ever goes stale. The walk also
reuses cached results of older commits it reaches: after a push of a few commits on top of a
commit whose listing was already computed (the page viewed before the push, or `warm()` called
by the push pipeline), the new listing costs a walk over just the new commits.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2

from opencodehub.config import Settings
from opencodehub.core.logging import get_logger
from opencodehub.repos import store

log = get_logger("opencodehub.repos.lastcommit")

MEMORY_ENTRIES = 2048
REDIS_TTL_SECONDS = 14 * 24 * 3600
REDIS_PREFIX = "och:lastcommit:v1:"
SUMMARY_CHARS = 300
# After this long in the walk, entries still open (a file untouched since the first commit of a
# 100,000-commit history) are asked of `git log -1 -- path`, one process each, side by side:
# git reads history several times faster than pygit2 can, and with commit-graph changed-path
# Bloom filters it skips almost every commit.
WALK_BUDGET_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class LastCommit:
    sha: str
    summary: str
    author_name: str
    author_email: str
    timestamp: int
    offset_minutes: int

    @property
    def date(self) -> datetime:
        return datetime.fromtimestamp(
            self.timestamp, tz=timezone(timedelta(minutes=self.offset_minutes))
        )


@dataclass(frozen=True, slots=True)
class TreeCommits:
    """entry name -> the sha of the last commit that changed it, and those commits."""

    entries: dict[str, str]
    commits: dict[str, LastCommit]

    def for_entry(self, name: str) -> LastCommit | None:
        sha = self.entries.get(name)
        return self.commits.get(sha) if sha is not None else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "entries": self.entries,
                "commits": {
                    sha: [c.summary, c.author_name, c.author_email, c.timestamp, c.offset_minutes]
                    for sha, c in self.commits.items()
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> TreeCommits:
        data = json.loads(raw)
        commits = {
            sha: LastCommit(sha, str(v[0]), str(v[1]), str(v[2]), int(v[3]), int(v[4]))
            for sha, v in data["commits"].items()
        }
        return cls({str(k): str(v) for k, v in data["entries"].items()}, commits)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _last_commit(commit: pygit2.Commit) -> LastCommit:
    message = _decode(commit.raw_message).strip()
    summary = message.split("\n", 1)[0][:SUMMARY_CHARS]
    author = commit.author
    return LastCommit(
        str(commit.id),
        summary,
        _decode(author.raw_name),
        _decode(author.raw_email),
        int(author.time),
        int(author.offset),
    )


# The walk ----------------------------------------------------------------------------------------


def _directory_tree(
    repo: pygit2.Repository, commit: pygit2.Commit, directory: str
) -> pygit2.Tree | None:
    if not directory:
        return commit.tree
    try:
        entry = commit.tree[directory]
    except KeyError:
        return None
    if entry.filemode != pygit2.enums.FileMode.TREE:
        return None
    found = repo.get(entry.id)
    return found if isinstance(found, pygit2.Tree) else None


def _directory_id(commit: pygit2.Commit, directory: str) -> pygit2.Oid | None:
    if not directory:
        return commit.tree_id
    try:
        entry = commit.tree[directory]
    except KeyError:
        return None
    return entry.id if entry.filemode == pygit2.enums.FileMode.TREE else None


def _entry_id(tree: pygit2.Tree | None, name: str) -> tuple[pygit2.Oid, int] | None:
    if tree is None:
        return None
    try:
        entry = tree[name]
    except KeyError:
        return None
    return entry.id, int(entry.filemode)


def compute(
    repo: pygit2.Repository,
    commit: pygit2.Commit,
    directory: str,
    *,
    known: Callable[[str], TreeCommits | None] | None = None,
    fallback: Callable[[list[str]], dict[str, str]] | None = None,
    budget_seconds: float = WALK_BUDGET_SECONDS,
) -> TreeCommits:
    """The last commit of every entry of `directory` at `commit` (see the module docstring).

    `known(sha)` returns an already computed listing of the same directory at an older commit,
    which answers every entry that reaches it. `fallback(names)` answers the entries still
    open after `budget_seconds` (name -> commit sha), see `git_log_fallback`.
    """
    start_tree = _directory_tree(repo, commit, directory)
    if start_tree is None:
        return TreeCommits({}, {})
    names = [_decode(entry.raw_name) for entry in start_tree]
    # Entries are looked up by their raw name; non-UTF-8 names keep their bytes.
    keys = {_decode(entry.raw_name): entry.name for entry in start_tree}
    resolved: dict[str, pygit2.Commit] = {}
    borrowed: dict[str, LastCommit] = {}
    pending: dict[pygit2.Oid, set[str]] = {commit.id: set(names)}
    counter = 0
    queue: list[tuple[int, int, pygit2.Commit]] = [(-commit.commit_time, counter, commit)]
    directory_ids: dict[pygit2.Oid, pygit2.Oid | None] = {}
    trees: dict[pygit2.Oid, pygit2.Tree | None] = {}

    def directory_id(of: pygit2.Commit) -> pygit2.Oid | None:
        if of.id not in directory_ids:
            directory_ids[of.id] = _directory_id(of, directory)
        return directory_ids[of.id]

    def tree_of(of: pygit2.Commit) -> pygit2.Tree | None:
        if of.id not in trees:
            trees[of.id] = _directory_tree(repo, of, directory)
        return trees[of.id]

    total = len(names)
    deadline = time.monotonic() + budget_seconds
    steps = 0
    while queue and len(resolved) + len(borrowed) < total:
        steps += 1
        if fallback is not None and steps % 256 == 0 and time.monotonic() > deadline:
            break
        _, _, current = heapq.heappop(queue)
        wanted = pending.pop(current.id, None)
        if not wanted:
            continue
        wanted = {name for name in wanted if name not in resolved and name not in borrowed}
        if not wanted:
            continue
        if known is not None and current.id != commit.id:
            listing = known(str(current.id))
            if listing is not None and all(name in listing.entries for name in wanted):
                for name in wanted:
                    found = listing.for_entry(name)
                    if found is not None:
                        borrowed[name] = found
                continue
        remaining = wanted
        own_id = directory_id(current)
        for parent in current.parents:
            if not remaining:
                break
            if directory_id(parent) == own_id:
                passed, remaining = remaining, set()
            else:
                own_tree, parent_tree = tree_of(current), tree_of(parent)
                passed = {
                    name
                    for name in remaining
                    if _entry_id(parent_tree, keys[name]) == _entry_id(own_tree, keys[name])
                }
                remaining = remaining - passed
            if passed:
                if parent.id in pending:
                    pending[parent.id] |= passed
                else:
                    pending[parent.id] = set(passed)
                    counter += 1
                    heapq.heappush(queue, (-parent.commit_time, counter, parent))
        for name in remaining:
            resolved[name] = current
        # Trees of commits already processed are not needed again (parents may be).
        trees.pop(current.id, None)

    open_names = [name for name in names if name not in resolved and name not in borrowed]
    if open_names and queue and fallback is not None:
        for name, sha in fallback([keys[name] for name in open_names]).items():
            found_commit = repo.get(sha)
            if isinstance(found_commit, pygit2.Commit):
                resolved[_decode(name.encode("utf-8", "surrogateescape"))] = found_commit

    entries: dict[str, str] = {}
    commits: dict[str, LastCommit] = {}
    for name, found_commit in resolved.items():
        sha = str(found_commit.id)
        entries[name] = sha
        if sha not in commits:
            commits[sha] = _last_commit(found_commit)
    for name, last in borrowed.items():
        entries[name] = last.sha
        commits.setdefault(last.sha, last)
    return TreeCommits(entries, commits)


def git_log_fallback(
    settings: Settings, repo: pygit2.Repository, commit: pygit2.Commit, directory: str
) -> Callable[[list[str]], dict[str, str]]:
    """One `git log --name-only -- dir/a dir/b …` over the open entries, read as it streams and
    stopped once every entry has its commit. (Its history simplification is over the union of
    the paths, a close approximation of the per-entry walk on merge-heavy histories.)"""
    repo_path = Path(repo.path.rstrip("/"))
    prefix = f"{directory}/" if directory else ""

    def run(names: list[str]) -> dict[str, str]:
        wanted = set(names)
        args = [
            settings.git_binary,
            "--git-dir",
            str(repo_path),
            "log",
            "--format=%x01%H",
            "--name-only",
            "--no-renames",
            "-z",
            "--end-of-options",
            str(commit.id),
            "--",
            *(f":(literal){prefix}{name}" for name in names),
        ]
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=store.git_environment(settings, repo_path),
        )
        assert process.stdout is not None
        answers: dict[str, str] = {}
        current = ""
        buffer = b""
        try:
            while wanted and (chunk := process.stdout.read1(65536)):
                buffer += chunk
                *fields, buffer = buffer.split(b"\x00")
                for field in fields:
                    field = field.strip(b"\n")
                    if field.startswith(b"\x01"):
                        header, _, field = field[1:].partition(b"\n")
                        current = header.decode("ascii", errors="replace")
                        field = field.strip(b"\n")
                    if not field or not current:
                        continue
                    path = field.decode("utf-8", errors="surrogateescape")
                    if not path.startswith(prefix):
                        continue
                    name = path[len(prefix) :].split("/", 1)[0]
                    if name in wanted:
                        wanted.discard(name)
                        answers[name] = current
        finally:
            process.stdout.close()
            if process.poll() is None:
                process.kill()
            process.wait()
        return answers

    return run


# Caching ---------------------------------------------------------------------------------------


class _Memory:
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, TreeCommits] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> TreeCommits | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, value: TreeCommits) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_memory = _Memory(MEMORY_ENTRIES)
_redis_clients: dict[str, object] = {}
_redis_lock = threading.Lock()


def _redis(settings: Settings):  # type: ignore[no-untyped-def]
    """A synchronous client for the configured Redis (routes here are plain `def`s)."""
    if not settings.redis_url:
        return None
    with _redis_lock:
        client = _redis_clients.get(settings.redis_url)
        if client is None:
            import redis

            client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            _redis_clients[settings.redis_url] = client
        return client


def cache_key(repository_id: int, commit_sha: str, directory: str) -> str:
    digest = hashlib.sha1(directory.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"{repository_id}:{commit_sha}:{digest}"


def cached(
    settings: Settings, repository_id: int, commit_sha: str, directory: str
) -> TreeCommits | None:
    """The listing if it was computed before (this process, then Redis); never computes."""
    key = cache_key(repository_id, commit_sha, directory)
    found = _memory.get(key)
    if found is not None:
        return found
    client = _redis(settings)
    if client is None:
        return None
    try:
        raw = client.get(REDIS_PREFIX + key)  # type: ignore[attr-defined]
    except Exception:  # Redis is a cache: losing it loses no state
        log.warning("lastcommit cache read failed", exc_info=True)
        return None
    if raw is None:
        return None
    try:
        found = TreeCommits.from_json(raw)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    _memory.put(key, found)
    return found


def _store(settings: Settings, key: str, value: TreeCommits) -> None:
    _memory.put(key, value)
    client = _redis(settings)
    if client is None:
        return
    try:
        client.set(REDIS_PREFIX + key, value.to_json(), ex=REDIS_TTL_SECONDS)  # type: ignore[attr-defined]
    except Exception:
        log.warning("lastcommit cache write failed", exc_info=True)


def last_commits(
    settings: Settings,
    repo: pygit2.Repository,
    repository_id: int,
    commit: pygit2.Commit,
    directory: str,
) -> TreeCommits:
    """The listing for `directory` at `commit`, from the cache or computed (and cached)."""
    sha = str(commit.id)
    found = cached(settings, repository_id, sha, directory)
    if found is not None:
        return found
    result = compute(
        repo,
        commit,
        directory,
        known=lambda older: cached(settings, repository_id, older, directory),
        fallback=git_log_fallback(settings, repo, commit, directory),
    )
    _store(settings, cache_key(repository_id, sha, directory), result)
    return result


def warm(settings: Settings, repository_id: int, commit_sha: str, directory: str = "") -> None:
    """Compute and cache a listing ahead of the first view, e.g. for a branch's new tip after a
    push (the walk then reuses the listing of the previous tip)."""
    repo = store.open_repository(settings, repository_id)
    try:
        commit = repo.get(commit_sha)
        if isinstance(commit, pygit2.Commit):
            last_commits(settings, repo, repository_id, commit, directory)
    finally:
        # Released now rather than at the next cyclic collection (the repository object sits
        # in a reference cycle): a walk of a large history fills libgit2's object cache.
        repo.free()


def clear_memory_cache() -> None:
    """Forget this process's cached listings (tests; Redis entries stay valid)."""
    _memory.clear()
