"""Markdown rendering: GitHub-flavoured features, repository-relative links, and sanitizing."""

from __future__ import annotations

import pytest

from opencodehub.web.markdown import RepoContext, render_markdown, resolve_url

CONTEXT = RepoContext("ada", "project", "feature/x", "docs")


def test_gfm_features() -> None:
    html = str(
        render_markdown(
            "# Title!\n\n- [x] done\n- [ ] todo\n\n| a | b |\n|:-|-:|\n| 1 | 2 |\n\n"
            "~~old~~ visit https://example.com\n\n```python\ndef f():\n    pass\n```\n"
        )
    )
    assert '<h1 id="user-content-title">' in html
    assert 'type="checkbox"' in html and "disabled" in html and "checked" in html
    assert "<table>" in html and 'class="md-align-right"' in html and "style=" not in html
    assert "<s>old</s>" in html
    assert '<a href="https://example.com"' in html
    assert '<pre class="hl"><code><span class="k">def</span>' in html


def test_relative_links_and_images_resolve_against_the_repository() -> None:
    html = str(
        render_markdown(
            "[guide](guide.md) [up](../README.md#intro) [root](/src/a.py) [out](../../../../x)"
            " [anchor](#title) [web](https://x.org/a) ![logo](img/logo.png)"
            ' <img src="raw.png">',
            repo_context=CONTEXT,
        )
    )
    assert 'href="/ada/project/blob/feature/x/docs/guide.md"' in html
    assert 'href="/ada/project/blob/feature/x/README.md#intro"' in html
    assert 'href="/ada/project/blob/feature/x/src/a.py"' in html
    assert 'href="/ada/project/blob/feature/x/x"' in html
    assert 'href="#title"' in html
    assert 'href="https://x.org/a"' in html
    assert 'src="/ada/project/raw/feature/x/docs/img/logo.png"' in html
    assert 'src="/ada/project/raw/feature/x/docs/raw.png"' in html


def test_resolve_url_leaves_absolute_urls_alone() -> None:
    for url in ("https://a.b/c", "mailto:a@b.c", "//evil.example/x", "#frag"):
        assert resolve_url(url, CONTEXT, kind="blob") == url


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ('<iframe src="https://evil.example"></iframe>', "<iframe"),
        ('<img src="x.png" onerror="alert(1)">', "onerror"),
        ('<a href="javascript:alert(1)">x</a>', "javascript:"),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', "avascript"),
        ("[x](javascript:alert(1))", 'href="javascript'),
        ('<a href="&#106;avascript:alert(1)">x</a>', "avascript:alert"),
        ("![x](data:image/png;base64,AAAA)", "data:"),
        ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "data:"),
        ("<svg><script>alert(1)</script></svg>", "<svg"),
        ('<svg onload="alert(1)"><circle/></svg>', "onload"),
        ('<div style="background:url(javascript:alert(1))">x</div>', "style="),
        ("<style>body{display:none}</style>", "<style"),
        ('<object data="x.swf"></object>', "<object"),
        ('<form action="/logout"><button>x</button></form>', "<form"),
        ('<math><mi xlink:href="javascript:alert(1)">x</mi></math>', "javascript"),
        ('<details open ontoggle="alert(1)"><summary>x</summary></details>', "ontoggle"),
        ('<a href="#" class="btn btn-primary evil-class">x</a>', "evil-class"),
    ],
)
def test_dangerous_markup_is_removed(source: str, forbidden: str) -> None:
    html = str(render_markdown(source, repo_context=CONTEXT)).lower()
    assert forbidden.lower() not in html


def test_raw_html_ids_are_prefixed() -> None:
    html = str(render_markdown('<h2 id="content">Hi</h2>'))
    assert 'id="user-content-content"' in html


def test_huge_input_is_cut() -> None:
    html = str(render_markdown("a" * (3 * 1024 * 1024)))
    assert len(html) < 2_200_000
