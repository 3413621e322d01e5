"""Syntax highlighting: lexer choice, balanced per-line HTML, limits, and the stylesheet."""

from __future__ import annotations

from opencodehub.web import highlight


def test_lexer_by_filename_then_content() -> None:
    assert highlight.lexer_for("x.py").name == "Python"
    assert highlight.lexer_for("Makefile").name == "Makefile"
    guessed = highlight.lexer_for("script", "#!/usr/bin/env python\nimport os\n")
    assert guessed.name == "Python"
    assert highlight.lexer_for("notes", "just some words").name == "Text only"


def test_lines_are_balanced_and_escaped() -> None:
    source = 'x = """a\n<b>\n"""\n# <script>\n'
    lines = highlight.highlight_lines(source, "a.py")
    assert len(lines) == 4
    for line in lines:
        assert str(line).count("<span") == str(line).count("</span>")
        assert "<script>" not in str(line) and "<b>" not in str(line)
    assert "&lt;script&gt;" in str(lines[3])


def test_long_lines_and_huge_files_are_bounded() -> None:
    line = highlight.highlight_lines("x" * 1_000_000 + "\n", "a.txt")[0]
    assert len(str(line)) == highlight.MAX_LINE_CHARS
    big = "a = 1\n" * (highlight.MAX_HIGHLIGHT_BYTES // 6 + 10)
    lines = highlight.highlight_lines(big, "big.py")
    assert "<span" not in str(lines[0])


def test_cache_returns_same_lines() -> None:
    first = highlight.highlight_lines("y = 2\n", "c.py", cache_key="abc")
    assert highlight.highlight_lines("y = 2\n", "c.py", cache_key="abc") is first


def test_fenced_block_unknown_language_is_escaped() -> None:
    html = str(highlight.highlight_block("<x>", "no-such-language"))
    assert "&lt;x&gt;" in html and html.startswith('<pre class="hl">')


def test_static_stylesheet_is_current() -> None:
    css = highlight.stylesheet()
    assert highlight.STYLESHEET_PATH.read_text(encoding="utf-8") == css
    assert ".hl .k {" in css and ':root[data-theme="dark"] .hl .k {' in css
    assert "@media (prefers-color-scheme: dark)" in css
