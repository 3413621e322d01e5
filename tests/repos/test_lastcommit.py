"""The last-commit column: one walk per (commit, directory), checked against `git log -1`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from opencodehub.config import Settings
from opencodehub.repos import lastcommit
from tests.conftest import REDIS_TEST_URL


class Builder:
    """Commits built directly with pygit2, with full control over parents and trees."""

    def __init__(self, path: Path) -> None:
        self.repo = pygit2.init_repository(str(path), bare=True)
        self.time = 1_700_000_000

    def commit(
        self, files: dict[str, bytes | None], parents: list[pygit2.Oid], message: str
    ) -> pygit2.Oid:
        base = self.repo.get(parents[0]).tree if parents else None
        index = pygit2.Index()
        if base is not None:
            index.read_tree(base)
        for path, data in files.items():
            if data is None:
                index.remove(path)
            else:
                index.add(pygit2.IndexEntry(path, self.repo.create_blob(data), FileMode.BLOB))
        tree = index.write_tree(self.repo)
        self.time += 60
        signature = pygit2.Signature("Ada", "ada@example.com", self.time, 0)
        return self.repo.create_commit(None, signature, signature, message, tree, parents)


def git_log_last(repo: pygit2.Repository, commit: pygit2.Oid, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", repo.path, "log", "-1", "--format=%H", str(commit), "--", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def history(tmp_path: Path) -> tuple[Builder, pygit2.Oid]:
    b = Builder(tmp_path / "r.git")
    c1 = b.commit({"README": b"r", "src/a.py": b"a", "src/b.py": b"b", "LICENSE": b"l"}, [], "one")
    c2 = b.commit({"src/a.py": b"a2"}, [c1], "two")
    side = b.commit({"src/b.py": b"b-side", "docs/x.md": b"x"}, [c2], "side")
    c3 = b.commit({"README": b"r3"}, [c2], "three")
    # A merge that keeps main's src/b.py: the side change to it is not in its history.
    merge_tree_index = pygit2.Index()
    merge_tree_index.read_tree(b.repo.get(c3).tree)
    merge_tree_index.add(pygit2.IndexEntry("docs/x.md", b.repo.create_blob(b"x"), FileMode.BLOB))
    tree = merge_tree_index.write_tree(b.repo)
    b.time += 60
    sig = pygit2.Signature("Ada", "ada@example.com", b.time, 0)
    merge = b.repo.create_commit(None, sig, sig, "merge", tree, [c3, side])
    c4 = b.commit({"src/c.py": b"c"}, [merge], "four")
    return b, c4


@pytest.mark.parametrize("directory", ["", "src", "docs"])
def test_matches_git_log(history: tuple[Builder, pygit2.Oid], directory: str) -> None:
    builder, head = history
    commit = builder.repo.get(head)
    result = lastcommit.compute(builder.repo, commit, directory)
    tree = commit.tree if not directory else builder.repo.get(commit.tree[directory].id)
    assert set(result.entries) == {entry.name for entry in tree}
    for entry in tree:
        path = f"{directory}/{entry.name}" if directory else entry.name
        assert result.entries[entry.name] == git_log_last(builder.repo, head, path), path
    for name, sha in result.entries.items():
        assert result.commits[sha].sha == sha, name


def test_fallback_after_budget_gives_same_answer(
    history: tuple[Builder, pygit2.Oid], tmp_path: Path
) -> None:
    builder, head = history
    commit = builder.repo.get(head)
    settings = Settings(data_dir=tmp_path, _env_file=None)
    walked = lastcommit.compute(builder.repo, commit, "")
    fallback = lastcommit.git_log_fallback(settings, builder.repo, commit, "")
    hybrid = lastcommit.compute(builder.repo, commit, "", fallback=fallback, budget_seconds=-1.0)
    assert hybrid.entries == walked.entries


def test_incremental_reuses_an_older_listing(history: tuple[Builder, pygit2.Oid]) -> None:
    builder, head = history
    commit = builder.repo.get(head)
    parent = commit.parents[0]
    older = lastcommit.compute(builder.repo, parent, "")
    asked: list[str] = []

    def known(sha: str) -> lastcommit.TreeCommits | None:
        asked.append(sha)
        return older if sha == str(parent.id) else None

    result = lastcommit.compute(builder.repo, commit, "", known=known)
    assert result.entries == lastcommit.compute(builder.repo, commit, "").entries
    assert asked == [str(parent.id)]


def test_cache_round_trip_and_missing_directory(
    history: tuple[Builder, pygit2.Oid], tmp_path: Path
) -> None:
    builder, head = history
    commit = builder.repo.get(head)
    listing = lastcommit.compute(builder.repo, commit, "src")
    again = lastcommit.TreeCommits.from_json(listing.to_json())
    assert again == listing
    assert lastcommit.compute(builder.repo, commit, "nope").entries == {}


def test_redis_cache(history: tuple[Builder, pygit2.Oid], tmp_path: Path) -> None:
    builder, head = history
    commit = builder.repo.get(head)
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_TEST_URL, _env_file=None)
    lastcommit.clear_memory_cache()
    computed = lastcommit.last_commits(settings, builder.repo, 987_654, commit, "")
    lastcommit.clear_memory_cache()
    assert lastcommit.cached(settings, 987_654, str(head), "") == computed
