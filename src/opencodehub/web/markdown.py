"""Markdown as GitHub renders it, made safe: `render_markdown(text, repo_context=...) -> Markup`.

markdown-it-py parses GitHub-flavoured markdown (tables, task lists, strikethrough, autolinks via
linkify-it-py, footnotes, alerts), fenced code is highlighted by Pygments (CSS classes only),
headings get anchors (`id="user-content-…"`, as GitHub prefixes them so a README cannot clobber
the page's own ids; `app.js` scrolls `#slug` to them). Relative links and images are resolved
against the repository (`/{o}/{r}/blob/{ref}/{dir}/x`, images through `/raw/`) by the sanitizer's
attribute filter, so links written as raw HTML are resolved the same way.

Raw HTML is allowed in the source, as on GitHub, and everything goes through nh3 (ammonia) last
with an allow-list: no script, style, iframe, object, SVG or form survives, no event-handler or
style attribute, and URLs may only be http(s), mailto or relative, so `javascript:` and `data:`
links and images disappear.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from markupsafe import Markup

from opencodehub.web.highlight import highlight_block

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

# The parser (markdown-it and its plugins) and the sanitizer (nh3) are imported when the first
# document is rendered, not when the server starts.

MAX_MARKDOWN_CHARS = 2 * 1024 * 1024
HEADING_ID_PREFIX = "user-content-"
_ALIGN_RE = re.compile(r"\Atext-align:(left|right|center)\Z")
_SLUG_DROP = re.compile(r"[^\w\- ]", re.UNICODE)

ALLOWED_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "bdo",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "input",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "picture",
        "pre",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "section",
        "small",
        "source",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "tt",
        "ul",
        "var",
        "wbr",
    }
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"title", "lang", "dir", "class", "id", "aria-hidden", "aria-label"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height", "align"},
    "source": {"srcset", "media"},
    "input": {"type", "checked", "disabled"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start", "type"},
    "li": {"value"},
    "details": {"open"},
    "time": {"datetime"},
    "q": {"cite"},
    "blockquote": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Classes the page's CSS gives meaning to; anything else a README sets is dropped.
_ALLOWED_CLASS_RE = re.compile(
    r"\A(?:hl|[a-z]{1,3}[0-9]?|task-list-item(?:-checkbox)?|contains-task-list|header-anchor|"
    r"footnote[a-z-]*|footnotes(?:-sep|-list)?|markdown-alert(?:-[a-z]+)?|"
    r"markdown-alert-title|md-align-(?:left|right|center)|anchor)\Z"
)


@dataclass(frozen=True, slots=True)
class RepoContext:
    """Where a markdown document lives, to resolve its relative links and images."""

    owner: str
    repo: str
    ref: str
    directory: str = ""  # the document's directory, "" for the root

    @property
    def base(self) -> str:
        return f"/{quote(self.owner)}/{quote(self.repo)}"


def slugify(text: str) -> str:
    """GitHub's heading slug: lowercased, punctuation dropped, spaces to hyphens."""
    return _SLUG_DROP.sub("", text.strip().lower()).replace(" ", "-")


def _prefixed_slug(text: str) -> str:
    return HEADING_ID_PREFIX + slugify(text)


def _is_relative(url: str) -> bool:
    if not url or url.startswith(("#", "//", "\\")):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return not parts.scheme and not parts.netloc


def resolve_url(url: str, context: RepoContext, *, kind: str) -> str:
    """A relative URL in a document as a path on this site: `kind` is "blob" or "raw"."""
    if not _is_relative(url):
        return url
    parts = urlsplit(url)
    path = parts.path
    if not path:
        return url  # "?query" or an empty link: leave it
    # "/x" is relative to the repository's root, "x" to the document's directory.
    joined = path.lstrip("/") if path.startswith("/") else posixpath.join(context.directory, path)
    normalized = posixpath.normpath(joined) if joined else ""
    # A link that climbs out of the repository stops at its root.
    pieces = [piece for piece in normalized.split("/") if piece not in ("", ".", "..")]
    target = f"{context.base}/{kind}/{quote(context.ref, safe='/')}"
    if pieces:
        target += "/" + "/".join(quote(piece, safe="") for piece in pieces)
    if parts.query:
        target += f"?{parts.query}"
    if parts.fragment:
        target += f"#{parts.fragment}"
    return target


def _fence(md: MarkdownIt) -> None:
    """Fenced code through Pygments, whatever the language says (escaped when unknown)."""

    def render_fence(
        self: object, tokens: list[Token], idx: int, options: object, env: object
    ) -> str:
        token = tokens[idx]
        language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else None
        return str(highlight_block(token.content, language))

    md.add_render_rule("fence", render_fence)
    md.add_render_rule("code_block", render_fence)


def _table_alignment(state: object) -> None:
    """Core rule: table alignment as classes; markdown-it writes it as a style attribute, which
    the CSP would block and the sanitizer removes."""
    stack: list[Token] = list(getattr(state, "tokens", []))
    while stack:
        token = stack.pop()
        if token.children:
            stack.extend(token.children)
        if token.type in ("th_open", "td_open"):
            style = token.attrGet("style")
            if isinstance(style, str) and (match := _ALIGN_RE.match(style)):
                token.attrs.pop("style", None)
                token.attrSet("class", f"md-align-{match.group(1)}")


def _html_link_rewriter(context: RepoContext | None):  # type: ignore[no-untyped-def]
    """nh3 attribute filter, the one place URLs are resolved: relative links and images, from
    markdown or raw HTML alike (`<img src="docs/x.png">`), point into the repository; classes
    outside the allow-list go."""

    def rewrite(element: str, attribute: str, value: str) -> str | None:
        if attribute == "class":
            kept = [name for name in value.split() if _ALLOWED_CLASS_RE.match(name)]
            return " ".join(kept) or None
        if attribute == "id":
            return (
                value
                if value.startswith(HEADING_ID_PREFIX) or value.startswith("fn")
                else (HEADING_ID_PREFIX + value)
            )
        if element == "input" and attribute == "type":
            return "checkbox" if value == "checkbox" else None
        if context is not None and attribute in ("href", "src"):
            kind = "raw" if attribute == "src" else "blob"
            return resolve_url(value, context, kind=kind)
        return value

    return rewrite


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.anchors import anchors_plugin
    from mdit_py_plugins.footnote import footnote_plugin

    md = MarkdownIt(
        "commonmark",
        {"html": True, "linkify": True, "typographer": False, "breaks": False},
    )
    md.enable(["table", "strikethrough", "linkify"])
    md.options["tasklists"] = True
    md.options["tasklists_editable"] = False
    md.options["alerts"] = True
    md.options["strikethrough_single_tilde"] = True
    md.use(footnote_plugin, inline=False)
    md.use(anchors_plugin, min_level=1, max_level=6, slug_func=_prefixed_slug)
    md.core.ruler.push("table_alignment", _table_alignment)
    _fence(md)
    return md


def sanitize_html(html: str, repo_context: RepoContext | None = None) -> str:
    """`html` with everything outside the allow-list removed (tags, attributes, URL schemes)."""
    import nh3

    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=set(URL_SCHEMES),
        attribute_filter=_html_link_rewriter(repo_context),
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(text: str, *, repo_context: RepoContext | None = None) -> Markup:
    """Safe HTML for a markdown document (cut at 2 M characters)."""
    if len(text) > MAX_MARKDOWN_CHARS:
        text = text[:MAX_MARKDOWN_CHARS]
    html = _parser().render(text)
    return Markup(sanitize_html(html, repo_context))  # noqa: S704 - sanitized by nh3 just above
