"""Repository-home figures that cost a walk: languages by bytes, and the commit count.

Both are cached by what makes them immutable (the tree id, the commit id), in this process.
"""

from __future__ import annotations

import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pygit2

from opencodehub.config import Settings
from opencodehub.repos import store

CACHE_ENTRIES = 1024
MAX_LANGUAGES = 8
_IGNORED_LANGUAGES = frozenset({"Text only", "Text output", "Raw token data"})


@dataclass(frozen=True, slots=True)
class LanguageShare:
    name: str
    bytes: int
    percent: float
    offset: float  # where its bar starts, in percent


class _Lru:
    def __init__(self, size: int) -> None:
        self._items: OrderedDict[tuple[object, ...], object] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> object | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: tuple[object, ...], value: object) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_languages = _Lru(CACHE_ENTRIES)
_counts = _Lru(CACHE_ENTRIES)


@lru_cache(maxsize=1)
def extension_languages() -> dict[str, str]:
    """File extension (lowercase, no dot) -> Pygments language name, from the lexers' own
    filename patterns (`*.py`); exact file names (`Makefile`) are mapped too."""
    mapping: dict[str, str] = {}
    from pygments.lexers import get_all_lexers  # Pygments loads with the first statistics

    for name, _aliases, patterns, _mimetypes in get_all_lexers():
        if name in _IGNORED_LANGUAGES:
            continue
        for pattern in patterns:
            if pattern.startswith("*.") and not any(ch in pattern[2:] for ch in "*?[]"):
                mapping.setdefault(pattern[2:].lower(), name)
            elif not any(ch in pattern for ch in "*?[]"):
                mapping.setdefault("/" + pattern, name)
    return mapping


def language_of(filename: str) -> str | None:
    mapping = extension_languages()
    base = filename.rsplit("/", 1)[-1]
    if ("/" + base) in mapping:
        return mapping["/" + base]
    if "." not in base:
        return None
    return mapping.get(base.rsplit(".", 1)[-1].lower())


def _git(settings: Settings, repo: pygit2.Repository, *args: str) -> bytes:
    repo_path = Path(repo.path.rstrip("/"))
    return subprocess.run(
        [settings.git_binary, "--git-dir", str(repo_path), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=store.git_environment(settings, repo_path),
        check=True,
        timeout=120,
    ).stdout


def languages(
    settings: Settings, repo: pygit2.Repository, repository_id: int, commit: pygit2.Commit
) -> list[LanguageShare]:
    """The biggest languages of the tree by bytes (the rest summed as "Other")."""
    key = (repository_id, str(commit.tree_id))
    found = _languages.get(key)
    if isinstance(found, list):
        return found
    # `ls-tree -r -l` reads every blob's size from the pack index side by side with the walk;
    # one process is much cheaper than a Python walk of 50,000 entries.
    output = _git(settings, repo, "ls-tree", "-r", "-l", "-z", "--full-tree", str(commit.tree_id))
    totals: dict[str, int] = {}
    for record in output.split(b"\x00"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        parts = meta.split()
        if len(parts) < 4 or parts[1] != b"blob" or not parts[3].isdigit():
            continue
        language = language_of(raw_path.decode("utf-8", errors="replace"))
        if language is not None:
            totals[language] = totals.get(language, 0) + int(parts[3])
    total = sum(totals.values())
    shares: list[LanguageShare] = []
    if total:
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        top = ranked[:MAX_LANGUAGES]
        other = sum(size for _, size in ranked[MAX_LANGUAGES:])
        if other:
            top.append(("Other", other))
        offset = 0.0
        for name, size in top:
            percent = round(100.0 * size / total, 1)
            shares.append(LanguageShare(name, size, percent, round(offset, 3)))
            offset += 100.0 * size / total
    _languages.put(key, shares)
    return shares


def commit_count(
    settings: Settings, repo: pygit2.Repository, repository_id: int, commit: pygit2.Commit
) -> int:
    """`git rev-list --count` (fast with a commit-graph), cached by commit."""
    key = (repository_id, str(commit.id))
    found = _counts.get(key)
    if isinstance(found, int):
        return found
    output = _git(settings, repo, "rev-list", "--count", "--end-of-options", str(commit.id))
    count = int(output.strip() or 0)
    _counts.put(key, count)
    return count
