"""Diffs as the commit and compare pages show them: a render model built from pygit2 patches.

Each file has its hunks and lines (with old and new line numbers), word-level highlights within
changed line pairs, and a split (side-by-side) arrangement computed on demand. Renames, mode
changes and binary files are labelled. Large diffs are cut, as GitHub cuts them: a file past
`MAX_FILE_LINES` changed lines, or any file once the page holds `MAX_TOTAL_LINES`, is shown
collapsed with a "Load diff" link (`load_file_diff` renders one file, up to `MAX_LOADED_LINES`);
past `MAX_FILES` files only names are listed. Patches are generated only for files that are
shown, so a commit touching 20,000 files costs no more than its first few hundred.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

import pygit2
from markupsafe import Markup, escape

MAX_FILES = 300
MAX_FILE_LINES = 3_000
MAX_TOTAL_LINES = 20_000
MAX_LOADED_LINES = 50_000
MAX_LINE_CHARS = 2_000
# Word diffs only pair lines of bounded length: difflib is quadratic in the worst case.
MAX_WORD_DIFF_CHARS = 500
_WORDS = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)

LineKind = Literal["context", "add", "del", "note"]
FileStatus = Literal["added", "removed", "modified", "renamed", "copied", "changed"]

# GitHub's names for a changed file's status, by libgit2's one-letter code (`--name-status`).
_STATUS: dict[str, FileStatus] = {
    "A": "added",
    "D": "removed",
    "M": "modified",
    "R": "renamed",
    "C": "copied",
    "T": "changed",
}


def file_status(delta: pygit2.DiffDelta) -> FileStatus:
    return _STATUS.get(delta.status_char(), "modified")


@dataclass(slots=True)
class DiffLine:
    kind: LineKind
    old_number: int | None
    new_number: int | None
    html: Markup

    @property
    def marker(self) -> str:
        return {"add": "+", "del": "-", "context": " ", "note": ""}[self.kind]


@dataclass(slots=True)
class SplitRow:
    left: DiffLine | None
    right: DiffLine | None


@dataclass(slots=True)
class Hunk:
    header: str
    lines: list[DiffLine]

    def split_rows(self) -> list[SplitRow]:
        """Context on both sides; a run of deletions and the additions after it side by side."""
        rows: list[SplitRow] = []
        deleted: list[DiffLine] = []
        added: list[DiffLine] = []

        def flush() -> None:
            for index in range(max(len(deleted), len(added))):
                rows.append(
                    SplitRow(
                        deleted[index] if index < len(deleted) else None,
                        added[index] if index < len(added) else None,
                    )
                )
            deleted.clear()
            added.clear()

        for line in self.lines:
            if line.kind == "del":
                if added:
                    flush()
                deleted.append(line)
            elif line.kind == "add":
                added.append(line)
            else:
                flush()
                rows.append(
                    SplitRow(line, line) if line.kind == "context" else SplitRow(line, None)
                )
        flush()
        return rows


@dataclass(slots=True)
class FileDiff:
    index: int
    path: str
    old_path: str | None  # renames and copies
    status: FileStatus
    additions: int | None
    deletions: int | None
    binary: bool = False
    old_mode: int = 0
    new_mode: int = 0
    hunks: list[Hunk] = field(default_factory=list)
    collapsed: bool = False  # too large to show unasked: "Load diff"
    reason: str = ""

    @property
    def anchor(self) -> str:
        return f"diff-{self.index}"

    @property
    def mode_changed(self) -> bool:
        return bool(self.old_mode and self.new_mode and self.old_mode != self.new_mode)


@dataclass(slots=True)
class DiffView:
    files: list[FileDiff]
    total_files: int
    additions: int
    deletions: int
    truncated: bool  # more files changed than are listed


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS] + "…"


def _word_highlight(old: str, new: str) -> tuple[Markup, Markup]:
    """Both lines with the changed words wrapped in <del>/<ins> (escaped, balanced)."""
    old_words, new_words = _WORDS.findall(old), _WORDS.findall(new)
    matcher = difflib.SequenceMatcher(None, old_words, new_words, autojunk=False)
    old_html: list[Markup] = []
    new_html: list[Markup] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        old_part = escape("".join(old_words[i1:i2]))
        new_part = escape("".join(new_words[j1:j2]))
        if tag == "equal":
            old_html.append(old_part)
            new_html.append(new_part)
            continue
        if old_part:
            old_html.append(Markup('<del class="word">{0}</del>').format(old_part))
        if new_part:
            new_html.append(Markup('<ins class="word">{0}</ins>').format(new_part))
    return Markup("").join(old_html), Markup("").join(new_html)


def _pair_words(lines: list[DiffLine], raw: list[str]) -> None:
    """Word highlights for each run of deletions followed by as many additions (line i of the
    run against line i), when the lines are similar enough to make it useful."""
    index = 0
    while index < len(lines):
        if lines[index].kind != "del":
            index += 1
            continue
        start = index
        while index < len(lines) and lines[index].kind == "del":
            index += 1
        middle = index
        while index < len(lines) and lines[index].kind == "add":
            index += 1
        deleted, added = range(start, middle), range(middle, index)
        for old_index, new_index in zip(deleted, added, strict=False):
            old, new = raw[old_index], raw[new_index]
            if len(old) > MAX_WORD_DIFF_CHARS or len(new) > MAX_WORD_DIFF_CHARS:
                continue
            if difflib.SequenceMatcher(None, old, new, autojunk=False).quick_ratio() < 0.4:
                continue
            lines[old_index].html, lines[new_index].html = _word_highlight(old, new)


def _hunks(patch: pygit2.Patch, limit: int) -> tuple[list[Hunk], int]:
    hunks: list[Hunk] = []
    count = 0
    for hunk in patch.hunks:
        lines: list[DiffLine] = []
        raw: list[str] = []
        for line in hunk.lines:
            origin = line.origin
            text = _cut(_decode(line.raw_content).rstrip("\r\n"))
            if origin == "+":
                kind: LineKind = "add"
            elif origin == "-":
                kind = "del"
            elif origin == " ":
                kind = "context"
            else:  # "\ No newline at end of file" and friends
                kind = "note"
                text = "No newline at end of file"
            lines.append(
                DiffLine(
                    kind,
                    line.old_lineno if line.old_lineno > 0 else None,
                    line.new_lineno if line.new_lineno > 0 else None,
                    escape(text),
                )
            )
            raw.append(text)
        _pair_words(lines, raw)
        hunks.append(Hunk(_decode(hunk.header.encode("utf-8", "surrogateescape")).strip(), lines))
        count += len(lines)
        if count > limit:
            break
    return hunks, count


def _file(index: int, delta: pygit2.DiffDelta) -> FileDiff:
    status = file_status(delta)
    removed = status == "removed"
    path = _decode(delta.old_file.raw_path if removed else delta.new_file.raw_path)
    old_path = _decode(delta.old_file.raw_path) if status in ("renamed", "copied") else None
    return FileDiff(
        index=index,
        path=path,
        old_path=old_path,
        status=status,
        additions=None,
        deletions=None,
        binary=bool(delta.is_binary),
        old_mode=int(delta.old_file.mode),
        new_mode=int(delta.new_file.mode),
    )


def tree_diff(repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree) -> pygit2.Diff:
    """The diff from `old` (None: the empty tree) to `new`, renames found."""
    diff = new.diff_to_tree(swap=True) if old is None else repo.diff(old, new)
    diff.find_similar()
    return diff


def _render_file(diff: pygit2.Diff, index: int, limit: int) -> FileDiff:
    patch = diff[index]
    delta = patch.delta
    item = _file(index, delta)
    _, additions, deletions = patch.line_stats
    item.additions, item.deletions = additions, deletions
    item.binary = bool(delta.is_binary)
    if item.binary:
        return item
    if additions + deletions > limit:
        item.collapsed = True
        item.reason = f"Large diff: {additions + deletions:,} changed lines are not shown."
        return item
    item.hunks, _ = _hunks(patch, limit)
    return item


def build(
    repo: pygit2.Repository,
    old: pygit2.Tree | None,
    new: pygit2.Tree,
    *,
    max_files: int = MAX_FILES,
    max_file_lines: int = MAX_FILE_LINES,
    max_total_lines: int = MAX_TOTAL_LINES,
) -> DiffView:
    diff = tree_diff(repo, old, new)
    stats = diff.stats
    total = len(diff)
    files: list[FileDiff] = []
    shown_lines = 0
    deltas: list[pygit2.DiffDelta] | None = None
    for index in range(min(total, max_files)):
        if shown_lines >= max_total_lines:
            if deltas is None:
                # Deltas without patches: names and statuses only, cheap for any size.
                deltas = list(diff.deltas)
            item = _file(index, deltas[index])
            item.collapsed = True
            item.reason = "This diff is not shown because the page already holds many changes."
            files.append(item)
            continue
        item = _render_file(diff, index, max_file_lines)
        shown_lines += sum(len(hunk.lines) for hunk in item.hunks)
        files.append(item)
    return DiffView(
        files=files,
        total_files=stats.files_changed,
        additions=stats.insertions,
        deletions=stats.deletions,
        truncated=total > max_files,
    )


def load_file_diff(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree, path: str
) -> FileDiff | None:
    """One file's diff in full (up to `MAX_LOADED_LINES`), for the "Load diff" link."""
    diff = tree_diff(repo, old, new)
    for index, delta in enumerate(diff.deltas):
        names = {_decode(delta.new_file.raw_path), _decode(delta.old_file.raw_path)}
        if path in names:
            item = _render_file(diff, index, MAX_LOADED_LINES)
            if item.collapsed:
                item.reason = "This diff is too large to show; download the files instead."
            return item
    return None
