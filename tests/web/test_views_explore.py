"""The explore page: public repositories (internal ones for signed-in users), search, sort,
pages."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos.models import Visibility
from opencodehub.web.views import EXPLORE_PER_PAGE
from tests.web.forms import log_in
from tests.web.test_views_home import make_repo

_ROW_NAME = re.compile(r'data-testid="repo-row">.*?<strong>([^<]+)</strong>', re.S)


def names(html: str) -> list[str]:
    return _ROW_NAME.findall(html)


@pytest.fixture
def world(db: Database, settings: Settings, make_user: Callable[..., User]) -> dict[str, User]:
    alice, bob = make_user("alice"), make_user("bob")
    with db.session() as session:
        accounts.create_organization(session, session.get(User, bob.id), "acme")
    make_repo(db, settings, alice, "alice", "apple-pie", description="Sweet")
    make_repo(db, settings, alice, "alice", "private-plans", Visibility.PRIVATE)
    make_repo(db, settings, bob, "bob", "banana_split")
    make_repo(db, settings, bob, "acme", "internal-wiki", Visibility.INTERNAL)
    return {"alice": alice, "bob": bob}


def test_anonymous_visitors_see_public_repositories_only(
    client: TestClient, world: dict[str, User]
) -> None:
    page = client.get("/explore")
    assert page.status_code == 200
    assert sorted(names(page.text)) == ["apple-pie", "banana_split"]
    assert "2 repositories" in page.text
    assert "Sweet" in page.text


def test_signed_in_users_also_see_internal_but_not_private(
    client: TestClient, world: dict[str, User]
) -> None:
    log_in(client)
    listed = names(client.get("/explore").text)
    assert sorted(listed) == ["apple-pie", "banana_split", "internal-wiki"]
    # Even its owner does not find a private repository here.
    assert "private-plans" not in listed


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("apple", ["apple-pie"]),
        ("APPLE", ["apple-pie"]),
        ("bob/", ["banana_split"]),
        ("alice/pie", ["apple-pie"]),
        ("_", ["banana_split"]),  # LIKE wildcards are matched literally
        ("%", []),
        ("private", []),
        ("' OR 1=1 --", []),
        ("..", []),
        ("nul\x00byte", []),
        ("\uff42\uff41\uff4e\uff41\uff4e\uff41", []),  # full-width look-alikes match nothing
        ("a" * 10_000, []),
    ],
)
def test_search_by_name(
    client: TestClient, world: dict[str, User], query: str, expected: list[str]
) -> None:
    page = client.get("/explore", params={"q": query})
    assert page.status_code == 200
    assert sorted(names(page.text)) == expected


def test_sort_by_name_and_updated(
    client: TestClient, db: Database, settings: Settings, world: dict[str, User]
) -> None:
    make_repo(db, settings, world["bob"], "bob", "zebra")
    by_name = names(client.get("/explore", params={"sort": "name"}).text)
    assert by_name == ["apple-pie", "banana_split", "zebra"]
    by_update = names(client.get("/explore", params={"sort": "updated"}).text)
    assert by_update[0] == "zebra"


@pytest.mark.parametrize("sort", ["stars", "bogus", "", "name; DROP TABLE repositories"])
def test_stars_and_unknown_sorts_fall_back_to_updated(
    client: TestClient, world: dict[str, User], sort: str
) -> None:
    page = client.get("/explore", params={"sort": sort})
    assert page.status_code == 200
    assert '<option value="updated" selected>' in page.text
    assert "stars" in page.text.lower()  # says why stars are not offered
    if sort == "stars":
        assert "Stars are not available yet" in page.text


def test_pagination(
    client: TestClient, db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    dave = make_user("dave")
    for number in range(EXPLORE_PER_PAGE + 3):
        make_repo(db, settings, dave, "dave", f"repo-{number:02d}")
    first = client.get("/explore", params={"sort": "name"})
    assert len(names(first.text)) == EXPLORE_PER_PAGE
    assert 'href="/explore?sort=name&amp;page=2" rel="next"' in first.text
    second = client.get("/explore", params={"sort": "name", "page": "2"})
    assert names(second.text) == [
        f"repo-{number:02d}" for number in range(EXPLORE_PER_PAGE, EXPLORE_PER_PAGE + 3)
    ]
    assert "Page 2 of 2" in second.text
    for page in ("0", "-1", "abc", "99999999999999999999", "1e3", "٣"):
        response = client.get("/explore", params={"page": page})
        assert response.status_code == 200
    beyond = client.get("/explore", params={"page": "400"})
    assert beyond.status_code == 200 and names(beyond.text) == []
