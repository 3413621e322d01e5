"""User and organization profile pages at `/{owner}`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import OrgRole, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos.models import Visibility
from tests.web.forms import log_in
from tests.web.test_views_explore import names
from tests.web.test_views_home import make_repo


@pytest.fixture
def alice(db: Database, settings: Settings, make_user: Callable[..., User]) -> User:
    user = make_user("alice")
    with db.session() as session:
        accounts.update_profile(
            session,
            session.get(User, user.id),
            full_name="Alice Liddell",
            bio="Down the rabbit hole",
            company="Wonderland Ltd",
            location="Oxford",
            website="alice.example.com",
        )
    make_repo(db, settings, user, "alice", "public-one")
    make_repo(db, settings, user, "alice", "secret-one", Visibility.PRIVATE)
    return user


def test_user_profile_shows_details_and_public_repositories(
    client: TestClient, alice: User
) -> None:
    page = client.get("/alice")
    assert page.status_code == 200
    for text in ("Alice Liddell", "Down the rabbit hole", "Wonderland Ltd", "Oxford"):
        assert text in page.text
    assert 'href="http://alice.example.com"' in page.text
    assert names(page.text) == ["public-one"]
    assert 'data-testid="repo-count">1<' in page.text


def test_owner_sees_private_repositories_on_own_profile(client: TestClient, alice: User) -> None:
    log_in(client)
    page = client.get("/alice")
    assert sorted(names(page.text)) == ["public-one", "secret-one"]
    assert 'href="/settings/profile"' in page.text


def test_collaborator_sees_what_it_may_read(
    client: TestClient, db: Database, alice: User, make_user: Callable[..., User]
) -> None:
    make_user("bob")
    log_in(client, "bob")
    assert names(client.get("/alice").text) == ["public-one"]


def test_profile_names_are_case_insensitive(client: TestClient, alice: User) -> None:
    assert client.get("/ALICE").status_code == 200


def test_user_profile_lists_organizations(client: TestClient, db: Database, alice: User) -> None:
    with db.session() as session:
        accounts.create_organization(session, session.get(User, alice.id), "acme")
    page = client.get("/alice")
    orgs = page.text.split('data-testid="profile-organizations"')[1].split("</ul>")[0]
    assert 'href="/acme"' in orgs


def test_organization_profile(
    client: TestClient,
    db: Database,
    settings: Settings,
    alice: User,
    make_user: Callable[..., User],
) -> None:
    bob = make_user("bob")
    make_user("mallory")
    with db.session() as session:
        org = accounts.create_organization(
            session, session.get(User, alice.id), "acme", full_name="Acme Corp"
        )
        accounts.add_org_member(session, org, session.get(User, bob.id), OrgRole.MEMBER)
    make_repo(db, settings, alice, "acme", "open-tool")
    make_repo(db, settings, alice, "acme", "staff-only", Visibility.PRIVATE)
    make_repo(db, settings, alice, "acme", "company-wiki", Visibility.INTERNAL)

    anonymous = client.get("/acme")
    assert anonymous.status_code == 200
    assert "Acme Corp" in anonymous.text and "Organization" in anonymous.text
    assert 'data-testid="member-count"><span class="muted">Members</span> 2<' in anonymous.text
    assert names(anonymous.text) == ["open-tool"]
    assert "/orgs/acme/people" not in anonymous.text

    log_in(client, "mallory")
    outsider = client.get("/acme")
    assert sorted(names(outsider.text)) == ["company-wiki", "open-tool"]
    assert "/orgs/acme/people" not in outsider.text

    log_in(client, "bob")
    member = client.get("/acme")
    assert sorted(names(member.text)) == ["company-wiki", "open-tool", "staff-only"]
    assert 'href="/orgs/acme/people"' in member.text
    assert 'href="/orgs/acme/teams"' in member.text


@pytest.mark.parametrize(
    "path",
    ["/nobody", "/-alice", "/alice-", "/a--b", "/" + "a" * 40, "/%00", "/%2e%2e", "/\uff41lice"],
)
def test_unknown_or_impossible_names_are_404(client: TestClient, alice: User, path: str) -> None:
    assert client.get(path).status_code == 404


def test_reserved_names_keep_their_own_pages(client: TestClient, alice: User) -> None:
    assert "Explore repositories" in client.get("/explore").text
    assert client.get("/login").status_code == 200
    assert client.get("/new", follow_redirects=False).status_code == 303  # to sign in
    # A reserved name that has no page of its own is not a profile either.
    assert client.get("/pricing").status_code == 404


def test_website_never_becomes_a_script_link(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    user = make_user("eve")
    with db.session() as session:
        account = session.get(User, user.id)
        assert account is not None
        # Written past the service's validation, as an old row or a bug might hold it.
        account.website = "javascript:alert(1)"
    page = client.get("/eve")
    assert page.status_code == 200
    assert 'href="javascript:' not in page.text
    assert "javascript:alert(1)" not in page.text  # neither a link nor text


def test_inactive_accounts_are_404(client: TestClient, db: Database, alice: User) -> None:
    with db.session() as session:
        account = session.get(User, alice.id)
        assert account is not None
        account.is_active = False
    assert client.get("/alice").status_code == 404
