"""The merge engine: mergeability checks and merges written without a work tree.

Everything happens in the object database with libgit2 (pygit2): a three-way merge of trees
gives an in-memory index, its conflicts are the conflicting files, and its tree becomes the
merge or squash commit. A rebase replays each commit of the head on the base the same way,
one three-way tree merge per commit. Nothing here touches a ref but `update_ref`, which moves
one ref with git's compare-and-swap (`git update-ref ref new old`), so a ref that moved under
us fails cleanly instead of losing the commit someone else pushed.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from opencodehub.config import Settings
from opencodehub.repos import store

ZERO_SHA = "0" * 40
# Conflicting paths listed for a pull request; past this the list is cut.
MAX_CONFLICT_FILES = 1000


class MergeConflict(Exception):
    """The trees do not merge cleanly; `paths` are the conflicting files."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        super().__init__(f"{len(paths)} conflicting file(s)")


class RefMoved(Exception):
    """The ref was not at the expected sha when it was to be moved (a concurrent push)."""


@dataclass(frozen=True)
class MergeCheck:
    mergeable: bool
    conflicts: list[str] = field(default_factory=list)
    merge_base: str | None = None


def _commit(git: pygit2.Repository, sha: str) -> pygit2.Commit:
    obj = git.get(sha)
    if obj is None:
        raise KeyError(sha)
    commit = obj.peel(pygit2.Commit)
    assert isinstance(commit, pygit2.Commit)
    return commit


def _conflict_paths(index: pygit2.Index) -> list[str]:
    conflicts = index.conflicts
    if conflicts is None:
        return []
    paths: set[str] = set()
    for ancestor, ours, theirs in conflicts:
        for entry in (ours, theirs, ancestor):
            if entry is not None:
                paths.add(entry.path)
                break
        if len(paths) >= MAX_CONFLICT_FILES:
            break
    return sorted(paths)


def merge_base(git: pygit2.Repository, base_sha: str, head_sha: str) -> str | None:
    found = git.merge_base(pygit2.Oid(hex=base_sha), pygit2.Oid(hex=head_sha))
    return str(found) if found is not None else None


def check_mergeable(git: pygit2.Repository, base_sha: str, head_sha: str) -> MergeCheck:
    """Would `head` merge into `base` without conflicts? (In memory; nothing is written.)"""
    ancestor = merge_base(git, base_sha, head_sha)
    if ancestor == head_sha:
        return MergeCheck(True, [], ancestor)  # nothing to merge, nothing conflicts
    if ancestor == base_sha:
        return MergeCheck(True, [], ancestor)  # a fast-forward never conflicts
    index = git.merge_commits(_commit(git, base_sha), _commit(git, head_sha))
    conflicts = _conflict_paths(index)
    return MergeCheck(not conflicts, conflicts, ancestor)


def _merged_tree(git: pygit2.Repository, base_sha: str, head_sha: str) -> pygit2.Oid:
    base, head = _commit(git, base_sha), _commit(git, head_sha)
    ancestor = merge_base(git, base_sha, head_sha)
    if ancestor == base_sha:
        return head.tree_id
    index = git.merge_commits(base, head)
    conflicts = _conflict_paths(index)
    if conflicts:
        raise MergeConflict(conflicts)
    return index.write_tree(git)


def create_merge_commit(
    git: pygit2.Repository,
    base_sha: str,
    head_sha: str,
    message: str,
    author: pygit2.Signature,
    committer: pygit2.Signature,
) -> str:
    """A merge commit of head into base (parents: base, head), always a real merge (--no-ff)."""
    tree = _merged_tree(git, base_sha, head_sha)
    oid = git.create_commit(
        None,
        author,
        committer,
        message,
        tree,
        [pygit2.Oid(hex=base_sha), pygit2.Oid(hex=head_sha)],
    )
    return str(oid)


def create_squash_commit(
    git: pygit2.Repository,
    base_sha: str,
    head_sha: str,
    message: str,
    author: pygit2.Signature,
    committer: pygit2.Signature,
) -> str:
    """One commit on base holding the merged tree of head."""
    tree = _merged_tree(git, base_sha, head_sha)
    oid = git.create_commit(None, author, committer, message, tree, [pygit2.Oid(hex=base_sha)])
    return str(oid)


def commits_between(git: pygit2.Repository, base_sha: str, head_sha: str) -> list[pygit2.Commit]:
    """The commits of head that base lacks, oldest first (`git log base..head --reverse`)."""
    walker = git.walk(
        pygit2.Oid(hex=head_sha), pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE
    )
    walker.hide(pygit2.Oid(hex=base_sha))
    return list(walker)


def rebase_commits(
    git: pygit2.Repository, base_sha: str, head_sha: str, committer: pygit2.Signature
) -> str:
    """Replay head's commits (merge commits dropped, as `git rebase` drops them) onto base, each
    keeping its author and message, all with `committer`. Returns the new tip."""
    tip = _commit(git, base_sha)
    for commit in commits_between(git, base_sha, head_sha):
        if len(commit.parents) > 1:
            continue
        parent_tree = commit.parents[0].tree if commit.parents else None
        if parent_tree is None:
            index = git.merge_trees(git.TreeBuilder().write(), tip.tree, commit.tree)
        else:
            index = git.merge_trees(parent_tree, tip.tree, commit.tree)
        conflicts = _conflict_paths(index)
        if conflicts:
            raise MergeConflict(conflicts)
        tree = index.write_tree(git)
        if tree == tip.tree_id:
            continue  # already applied upstream: git rebase drops it too
        oid = git.create_commit(None, commit.author, committer, commit.message, tree, [tip.id])
        tip = _commit(git, str(oid))
    return str(tip.id)


# The test merge ---------------------------------------------------------------------------------


def test_merge_ref(number: int) -> str:
    return f"refs/pull/{number}/merge"


def update_test_merge(
    settings: Settings, repository_id: int, number: int, base_sha: str, head_sha: str
) -> str | None:
    """GitHub's `refs/pull/{n}/merge`: a merge commit of head into base (parents: base, head),
    written without a work tree. Returns its sha, or None when head and base conflict (the ref
    is then removed, so nothing runs on a stale merge). The commit's author, committer and
    time come from the two commits only, so every worker writing it for the same pair of
    commits writes the same object, and the ref moves once."""
    git = store.open_repository(settings, repository_id)
    ref = test_merge_ref(number)
    try:
        base, head = _commit(git, base_sha), _commit(git, head_sha)
        tree = _merged_tree(git, base_sha, head_sha)
    except (MergeConflict, KeyError, ValueError, pygit2.GitError):
        tree = None
    if tree is None:
        if git.references.get(ref) is not None:
            with contextlib.suppress(RefMoved):  # already gone
                update_ref(settings, repository_id, ref, ZERO_SHA, None)
        return None
    when = max(base.commit_time, head.commit_time)
    signature = pygit2.Signature("OpenCodeHub", "noreply@opencodehub.invalid", when, 0)
    oid = git.create_commit(
        None,
        signature,
        signature,
        f"Merge {head_sha} into {base_sha}\n",
        tree,
        [base.id, head.id],
    )
    current = git.references.get(ref)
    if current is None or str(current.target) != str(oid):
        update_ref(settings, repository_id, ref, str(oid), None)
    return str(oid)


# Refs ------------------------------------------------------------------------------------------


def update_ref(
    settings: Settings, repository_id: int, ref: str, new_sha: str, old_sha: str | None
) -> None:
    """Move `ref` from `old_sha` to `new_sha` atomically (compare-and-swap); `old_sha` ZERO_SHA
    means the ref must not exist yet, None means any current value, `new_sha` ZERO_SHA deletes.
    RefMoved when the ref was not where expected."""
    path = store.repository_path(settings, repository_id)
    if new_sha == ZERO_SHA:
        args = ["update-ref", "-d", "--end-of-options", ref]
    else:
        args = ["update-ref", "--end-of-options", ref, new_sha]
    if old_sha is not None:
        args.append(old_sha)
    run_git(settings, path, args, error=RefMoved)


def run_git(
    settings: Settings,
    repo_path: Path,
    args: list[str],
    *,
    error: type[Exception] = RuntimeError,
    timeout: float = 600,
) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=repo_path,
        env=store.git_environment(settings, repo_path, {"GIT_DIR": str(repo_path)}),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise error(result.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed")
    return result.stdout.decode("utf-8", "replace")
