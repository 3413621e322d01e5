"""The diff render model: lines, word highlights, split rows, renames, binary, large files."""

from __future__ import annotations

from pathlib import Path

import pygit2
from pygit2.enums import FileMode

from opencodehub.repos import diffview


def _tree(repo: pygit2.Repository, files: dict[str, bytes]) -> pygit2.Tree:
    index = pygit2.Index()
    for path, data in files.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), FileMode.BLOB))
    return repo.get(index.write_tree(repo))


def test_modified_file_lines_and_word_highlights(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    old = _tree(repo, {"a.py": b"x = 1\ny = 2\nz = 3\n"})
    new = _tree(repo, {"a.py": b"x = 1\ny = 20\nz = 3\nw = <4>\n"})
    view = diffview.build(repo, old, new)
    assert view.total_files == 1 and view.additions == 2 and view.deletions == 1
    file = view.files[0]
    assert file.status == "modified" and file.additions == 2 and file.deletions == 1
    lines = file.hunks[0].lines
    kinds = [line.kind for line in lines]
    assert kinds == ["context", "del", "add", "context", "add"]
    assert str(lines[1].html) == 'y = <del class="word">2</del>'
    assert str(lines[2].html) == 'y = <ins class="word">20</ins>'
    assert str(lines[4].html) == "w = &lt;4&gt;"
    assert (lines[1].old_number, lines[2].new_number) == (2, 2)
    rows = file.hunks[0].split_rows()
    assert rows[1].left is lines[1] and rows[1].right is lines[2]
    assert rows[3].left is None and rows[3].right is lines[4]


def test_rename_binary_added_and_root(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    body = b"".join(b"line %d\n" % n for n in range(50))
    old = _tree(repo, {"old.txt": body, "img.bin": b"\x00\x01"})
    new = _tree(repo, {"new.txt": body + b"more\n", "img.bin": b"\x00\x02", "added.txt": b"a\n"})
    files = {file.path: file for file in diffview.build(repo, old, new).files}
    assert files["new.txt"].status == "renamed" and files["new.txt"].old_path == "old.txt"
    assert files["img.bin"].binary and not files["img.bin"].hunks
    assert files["added.txt"].status == "added"
    root = diffview.build(repo, None, old)
    assert {file.status for file in root.files} == {"added"}


def test_large_files_are_collapsed_and_loadable(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    big = b"".join(b"row %d\n" % n for n in range(diffview.MAX_FILE_LINES + 10))
    old = _tree(repo, {"small.txt": b"a\n"})
    new = _tree(repo, {"small.txt": b"b\n", "big.txt": big})
    view = diffview.build(repo, old, new)
    files = {file.path: file for file in view.files}
    assert files["big.txt"].collapsed and not files["big.txt"].hunks
    assert files["small.txt"].hunks
    loaded = diffview.load_file_diff(repo, old, new, "big.txt")
    assert loaded is not None and not loaded.collapsed
    assert sum(len(h.lines) for h in loaded.hunks) == diffview.MAX_FILE_LINES + 10
    assert diffview.load_file_diff(repo, old, new, "nope") is None


def test_total_cap_and_file_cap(tmp_path: Path) -> None:
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    old = _tree(repo, {"keep": b"k\n"})
    new = _tree(repo, {f"f{n:03}.txt": b"x\n" * 20 for n in range(12)})
    view = diffview.build(repo, old, new, max_files=10, max_total_lines=50)
    assert view.truncated and len(view.files) == 10
    assert any(file.collapsed for file in view.files)
    long_line = b"y" * (diffview.MAX_LINE_CHARS * 3) + b"\n"
    view = diffview.build(repo, old, _tree(repo, {"keep": long_line}))
    shown = view.files[0].hunks[0].lines[-1]
    assert len(str(shown.html)) <= diffview.MAX_LINE_CHARS + 1
