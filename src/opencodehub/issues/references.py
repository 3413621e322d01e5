"""Issue references (`#12`, `owner/repo#12`), closing keywords and `@mentions` in text.

Parsing is pure (no database), so it is tested on its own. Text in code spans and fenced code
blocks is not scanned, as on GitHub. Rendering works on HTML that `web/markdown.py` has already
sanitized: only text outside `<a>`, `<code>` and `<pre>` is rewritten, and every inserted link is
built here from escaped parts, so the result stays safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}"
_REPO = r"[A-Za-z0-9._-]{1,100}"
_NUMBER = r"[1-9][0-9]{0,9}"

ISSUE_REF_RE = re.compile(
    rf"(?<![\w/#&.-])(?:(?P<owner>{_OWNER})/(?P<repo>{_REPO}))?#(?P<number>{_NUMBER})\b"
)
CLOSING_KEYWORDS = (
    "close",
    "closes",
    "closed",
    "fix",
    "fixes",
    "fixed",
    "resolve",
    "resolves",
    "resolved",
)
CLOSING_RE = re.compile(
    r"(?<![\w-])(?:" + "|".join(CLOSING_KEYWORDS) + r")\s*:?\s+"
    rf"(?:(?P<owner>{_OWNER})/(?P<repo>{_REPO}))?#(?P<number>{_NUMBER})\b",
    re.IGNORECASE,
)
MENTION_RE = re.compile(rf"(?<![\w@/`.+-])@(?P<name>{_OWNER})(?![\w-]|\.\w|/)")

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^ {0,3}\1[`~]*[ \t]*$|\Z)", re.M | re.S)
_CODE_SPAN_RE = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_QUOTE_LINE_RE = re.compile(r"^ {0,3}>.*$", re.M)


@dataclass(frozen=True)
class IssueRef:
    """`owner`/`repo` are None for a reference within the same repository."""

    owner: str | None
    repo: str | None
    number: int


def strip_code(text: str) -> str:
    """The text without fenced code blocks and code spans (references there are not links)."""
    text = _FENCE_RE.sub("", text or "")
    return _CODE_SPAN_RE.sub("", text)


def _ref(match: re.Match[str]) -> IssueRef:
    return IssueRef(match.group("owner"), match.group("repo"), int(match.group("number")))


def issue_references(text: str) -> list[IssueRef]:
    """Every distinct issue reference, in order of first appearance."""
    seen: dict[IssueRef, None] = {}
    for match in ISSUE_REF_RE.finditer(strip_code(text)):
        seen.setdefault(_ref(match), None)
    return list(seen)


def closing_references(text: str) -> list[IssueRef]:
    """References preceded by a closing keyword (`Fixes #3`, `closes owner/repo#4`)."""
    seen: dict[IssueRef, None] = {}
    for match in CLOSING_RE.finditer(strip_code(text)):
        seen.setdefault(_ref(match), None)
    return list(seen)


def mentions(text: str) -> list[str]:
    """Mentioned user names, lower-cased and distinct; quoted lines do not mention anyone."""
    text = _QUOTE_LINE_RE.sub("", strip_code(text))
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        seen.setdefault(match.group("name").lower(), None)
    return list(seen)


# Rendering -------------------------------------------------------------------------------------

# Given a reference, the link target and its title, or None when the reference must stay plain
# text (no such issue, or one the viewer may not see).
IssueResolver = Callable[[IssueRef], tuple[str, str] | None]
# Given a lower-cased user name, the profile URL, or None when there is no such user.
UserResolver = Callable[[str], str | None]

_TAG_RE = re.compile(r"(<[^>]*>)")
_SKIP_TAGS = ("a", "code", "pre")
_TAG_NAME_RE = re.compile(r"<\s*(/?)\s*([a-zA-Z0-9]+)")


def link_references(html: str, resolve_issue: IssueResolver, resolve_user: UserResolver) -> Markup:
    """Turn issue references and mentions in sanitized HTML into links."""
    parts = _TAG_RE.split(str(html))
    depth = 0
    out: list[str] = []
    for part in parts:
        if part.startswith("<"):
            tag = _TAG_NAME_RE.match(part)
            if tag and tag.group(2).lower() in _SKIP_TAGS and not part.endswith("/>"):
                depth += -1 if tag.group(1) else 1
                depth = max(depth, 0)
            out.append(part)
        elif depth or not part:
            out.append(part)
        else:
            out.append(_link_text(part, resolve_issue, resolve_user))
    return Markup("".join(out))  # noqa: S704 - sanitized input; links built from escaped parts


def _link_text(text: str, resolve_issue: IssueResolver, resolve_user: UserResolver) -> str:
    def issue_link(match: re.Match[str]) -> str:
        target = resolve_issue(_ref(match))
        if target is None:
            return match.group(0)
        url, title = target
        return (
            f'<a class="issue-link" href="{escape(url)}" title="{escape(title)}">'
            f"{match.group(0)}</a>"
        )

    def user_link(match: re.Match[str]) -> str:
        url = resolve_user(match.group("name").lower())
        if url is None:
            return match.group(0)
        return f'<a class="user-mention" href="{escape(url)}">{match.group(0)}</a>'

    text = ISSUE_REF_RE.sub(issue_link, text)
    # Mentions only outside the links just made: split again on tags.
    pieces = _TAG_RE.split(text)
    depth = 0
    for index, piece in enumerate(pieces):
        if piece.startswith("<"):
            depth += -1 if piece.startswith("</") else 1
        elif depth == 0 and piece:
            pieces[index] = MENTION_RE.sub(user_link, piece)
    return "".join(pieces)
