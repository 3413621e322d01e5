"""Parsing references, closing keywords and mentions, and linking them in sanitized HTML
(pure functions: no database)."""

from __future__ import annotations

import pytest

from opencodehub.issues import service
from opencodehub.issues.references import (
    IssueRef,
    closing_references,
    issue_references,
    link_references,
    mentions,
)
from opencodehub.web.markdown import render_markdown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fixes #12", [IssueRef(None, None, 12)]),
        (
            "fixed: #3 and Closes  acme/api#40",
            [IssueRef(None, None, 3), IssueRef("acme", "api", 40)],
        ),
        ("RESOLVES #7.", [IssueRef(None, None, 7)]),
        ("close #1, close #1", [IssueRef(None, None, 1)]),
        ("prefixes #5", []),
        ("unfixed #5", []),
        ("fixes#5", []),
        ("fixes issue #5", []),
        ("`fixes #5`", []),
        ("```\nfixes #5\n```\n", []),
        ("fixes #0", []),
        ("fixes &#35;5", []),
    ],
)
def test_closing_keywords(text: str, expected: list[IssueRef]) -> None:
    assert closing_references(text) == expected


def test_references_and_mentions() -> None:
    text = "See #4, org/repo#5 and #4 again; not a#6 or x/#7 or `#8`. cc @Bob @carol-x @bob"
    assert issue_references(text) == [IssueRef(None, None, 4), IssueRef("org", "repo", 5)]
    assert mentions(text) == ["bob", "carol-x"]
    assert mentions("mail me@example.com, see @-nope and\n> @quoted\n@ok") == ["ok"]


def test_links_skip_code_and_unknown_targets() -> None:
    html = str(
        render_markdown(
            "Fixes #1, see owner/secret#2 and @alice, @ghost.\n\n`#1 @alice` [#1](/x)\n\n"
            "<a href='/y'>#1</a>"
        )
    )

    def issue(ref: IssueRef) -> tuple[str, str] | None:
        # The viewer may not see owner/secret: it stays text.
        return ("/o/r/issues/1", 'Crash "quoted" <b>') if ref.owner is None else None

    def user(name: str) -> str | None:
        return f"/{name}" if name == "alice" else None

    linked = str(link_references(html, issue, user))
    assert 'href="/o/r/issues/1" title="Crash &#34;quoted&#34; &lt;b&gt;">#1</a>' in linked
    assert "owner/secret#2" in linked and "/issues/2" not in linked
    assert '<a class="user-mention" href="/alice">@alice</a>' in linked and "@ghost" in linked
    assert "<code>#1 @alice</code>" in linked
    assert linked.count('class="issue-link"') == 1
    assert linked.count('class="user-mention"') == 1


@pytest.mark.parametrize(
    ("query", "state", "labels", "creator", "q"),
    [
        ("is:open label:bug author:alice crash", "open", ["bug"], "alice", "crash"),
        ('is:closed label:"help wanted" words here', "closed", ["help wanted"], None, "words here"),
        ("", "open", [], None, ""),
        ("is:all unknown:thing", "all", [], None, "unknown:thing"),
    ],
)
def test_query_syntax(
    query: str, state: str, labels: list[str], creator: str | None, q: str
) -> None:
    parsed = service.parse_query(query)
    assert (parsed.state, parsed.labels, parsed.creator, parsed.q) == (state, labels, creator, q)


def test_query_qualifiers() -> None:
    parsed = service.parse_query("no:assignee no:milestone is:pr mentions:bob sort:updated-asc")
    assert parsed.assignee == "none" and parsed.milestone == "none" and parsed.kind == "pr"
    assert parsed.mentioned == "bob" and (parsed.sort, parsed.direction) == ("updated", "asc")
    assert service.parse_query('milestone:"v 1"').milestone == "title:v 1"
