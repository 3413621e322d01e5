"""GitHub's filter glob syntax for branches, tags and paths."""

from __future__ import annotations

import pytest

from opencodehub.actions.filters import (
    FilterError,
    glob_match,
    match_any_path,
    match_ref_filters,
    matches_patterns,
)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("feature/*", "feature/my-branch", True),
        ("feature/*", "feature/your/branch", False),
        ("feature/**", "feature/your/branch", True),
        ("main", "main", True),
        ("main", "mainline", False),
        ("v2*", "v2.0.0", True),
        ("v[12].[0-9]+.[0-9]+", "v1.10.1", True),
        ("v[12].[0-9]+.[0-9]+", "v3.1.1", False),
        ("*.jsx?", "page.js", True),
        ("*.jsx?", "page.jsx", True),
        ("*.jsx?", "page.jsxx", False),
        ("**.js", "deep/dir/app.js", True),
        ("*.js", "deep/app.js", False),
        ("docs/**/*.md", "docs/a.md", True),
        ("docs/**/*.md", "docs/x/y/a.md", True),
        ("**/migrate-*.sql", "db/migrate-001.sql", True),
        ("'*'", "'x'", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a+b", "aaab", True),
        ("a+b", "b", False),
    ],
)
def test_glob(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_negation_order() -> None:
    patterns = ["releases/**", "!releases/**-alpha", "releases/special-alpha"]
    assert matches_patterns(patterns, "releases/1.0")
    assert not matches_patterns(patterns, "releases/1.0-alpha")
    assert matches_patterns(patterns, "releases/special-alpha")
    assert not matches_patterns(["!main"], "main")


def test_ref_and_path_filters() -> None:
    assert match_ref_filters("main", None, None)
    assert match_ref_filters("main", ["main"], None)
    assert not match_ref_filters("main", None, ["main"])
    assert match_any_path(None, ["src/**"], None)
    assert match_any_path(["src/a", "b"], ["src/**"], None)
    assert not match_any_path(["b"], ["src/**"], None)
    assert not match_any_path(["docs/a.md"], None, ["docs/**"])
    assert match_any_path(["docs/a.md", "x"], None, ["docs/**"])
    assert match_any_path(["sub/x.txt"], ["sub/**", "!sub/**.md"], None)
    assert not match_any_path(["sub/x.md"], ["sub/**", "!sub/**.md"], None)


@pytest.mark.parametrize("pattern", ["[abc", "+x", "a\\", "[]"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(FilterError):
        glob_match(pattern, "x")
