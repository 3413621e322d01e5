"""GitHub-style pagination: `page` and `per_page` in, a `Link` header out."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30


@dataclass(frozen=True)
class Page:
    number: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def of(cls, page: int | None, per_page: int | None) -> Page:
        number = page if page and page > 0 else 1
        size = per_page if per_page and per_page > 0 else DEFAULT_PER_PAGE
        return cls(number=number, per_page=min(size, MAX_PER_PAGE))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def limit(self) -> int:
        return self.per_page


def link_header(
    url: str, params: dict[str, str], page: Page, total: int | None, has_next: bool
) -> str:
    """The `Link` header for `url` (without its query) and the request's other parameters.

    `total` may be None when counting would cost a scan; then only next/prev are given.
    """

    def link(number: int, rel: str) -> str:
        query = {**params, "page": str(number), "per_page": str(page.per_page)}
        return f'<{url}?{urlencode(query)}>; rel="{rel}"'

    links = []
    if has_next:
        links.append(link(page.number + 1, "next"))
        if total is not None:
            last = max(1, -(-total // page.per_page))
            links.append(link(last, "last"))
    if page.number > 1:
        links.append(link(1, "first"))
        links.append(link(page.number - 1, "prev"))
    return ", ".join(links)
