"""Branch, tag and path filters with GitHub's glob syntax.

``*`` matches any characters but ``/``; ``**`` matches any characters including ``/``; ``?``
makes the preceding character optional; ``+`` repeats it one or more times; ``[…]`` is a
character class; ``\\`` escapes; a leading ``!`` in a list negates, and the last pattern that
matches decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = [
    "FilterError",
    "glob_match",
    "glob_to_regex",
    "match_any_path",
    "match_ref_filters",
    "matches_patterns",
]


class FilterError(ValueError):
    pass


@lru_cache(maxsize=2048)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise FilterError(f"pattern {pattern!r} ends with an escape character")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                # `**/` also matches no directory at all, like `**` in GitHub's filters.
                if i + 2 < n and pattern[i + 2] == "/":
                    out.append("(?:.*/)?")
                    i += 3
                else:
                    out.append(".*")
                    i += 2
            else:
                out.append("[^/]*")
                i += 1
            continue
        if c in "?+":
            if not out:
                raise FilterError(f"pattern {pattern!r}: '{c}' needs a preceding character")
            out[-1] = f"(?:{out[-1]}){c}"
            i += 1
            continue
        if c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise FilterError(f"pattern {pattern!r}: unclosed '['")
            body = pattern[i + 1 : j]
            if not body:
                raise FilterError(f"pattern {pattern!r}: empty '[]'")
            escaped = "".join(
                "\\" + ch if ch in "\\^[]" and not (ch == "^" and k == 0) else ch
                for k, ch in enumerate(body)
            )
            out.append(f"[{escaped}]")
            i = j + 1
            continue
        out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: str, value: str) -> bool:
    return glob_to_regex(pattern).fullmatch(value) is not None


def matches_patterns(patterns: Sequence[str], value: str) -> bool:
    """Whether ``value`` is included by an ordered list with ``!`` negations."""
    included = False
    for raw in patterns:
        pat = str(raw)
        if pat.startswith("!"):
            if included and glob_match(pat[1:], value):
                included = False
        elif not included and glob_match(pat, value):
            included = True
    return included


def match_ref_filters(
    name: str, include: Sequence[str] | None, ignore: Sequence[str] | None
) -> bool:
    if include is not None:
        return matches_patterns(include, name)
    if ignore is not None:
        return not matches_patterns(ignore, name)
    return True


def match_any_path(
    paths: Iterable[str] | None, include: Sequence[str] | None, ignore: Sequence[str] | None
) -> bool:
    """GitHub's path filters: ``paths`` runs when any changed file is included;
    ``paths-ignore`` runs unless every changed file is ignored. Unknown changes (None) run."""
    if paths is None or (include is None and ignore is None):
        return True
    files = list(paths)
    if include is not None:
        return any(matches_patterns(include, p) for p in files)
    assert ignore is not None
    if not files:
        return True
    return not all(matches_patterns(ignore, p) for p in files)
