"""Blame through `git blame --porcelain`, parsed into hunks."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.repos import blame


def _commit(
    repo: pygit2.Repository, content: bytes, parents: list[pygit2.Oid], when: int
) -> pygit2.Oid:
    index = pygit2.Index()
    index.add(pygit2.IndexEntry("f.txt", repo.create_blob(content), FileMode.BLOB))
    tree = index.write_tree(repo)
    signature = pygit2.Signature(f"Author {when}", f"a{when}@example.com", when, 60)
    return repo.create_commit(None, signature, signature, f"change {when}\n\nbody", tree, parents)


def test_blame_lines_and_commits(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    first = _commit(repo, b"one\ntwo\nthree\n", [], 1_700_000_000)
    second = _commit(repo, b"one\nTWO\nthree\nfour\n", [first], 1_700_000_600)
    settings = Settings(data_dir=tmp_path, _env_file=None)
    result = blame.blame_file(settings, repo, repo.get(second), "f.txt")
    assert result.line_count == 4
    owners = {number: hunk.commit.sha for hunk in result.hunks for number in hunk.lines}
    assert owners == {1: str(first), 2: str(second), 3: str(first), 4: str(second)}
    commit = result.hunks[1].commit
    assert commit.summary == "change 1700000600"
    assert commit.author_email == "a1700000600@example.com"
    assert commit.date.utcoffset() is not None and commit.date.utcoffset().seconds == 3600
    # A second call is answered from the cache.
    assert blame.blame_file(settings, repo, repo.get(second), "f.txt") is result


def test_missing_and_non_file_paths(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    head = _commit(repo, b"x\n", [], 1_700_000_000)
    settings = Settings(data_dir=tmp_path, _env_file=None)
    with pytest.raises(NotFound):
        blame.blame_file(settings, repo, repo.get(head), "nope.txt")
    with pytest.raises(NotFound):
        blame.blame_file(settings, repo, repo.get(head), "-L1,1")
