"""Organization pages: creation, people and teams, with their permissions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import OrgRole, User
from opencodehub.db.engine import Database
from tests.web.forms import log_in, post_form


@pytest.fixture
def alice(client: TestClient, make_user: Callable[..., User]) -> User:
    user = make_user("alice")
    assert log_in(client).status_code == 303
    return user


def _org(db: Database, name: str = "acme") -> User:
    with db.session() as session:
        org = accounts.get_organization(session, name)
        assert org is not None
        return org


def _role(db: Database, org: str, user: str) -> OrgRole | None:
    with db.session() as session:
        membership = accounts.get_org_membership(
            session,
            _org(db, org),
            accounts.get_user(session, user),  # type: ignore[arg-type]
        )
        return membership.role if membership else None


def _create_org(client: TestClient, name: str = "acme") -> None:
    response = post_form(
        client, "/organizations/new", "/organizations/new", {"login": name, "full_name": "Acme"}
    )
    assert response.status_code == 303, response.text[-1500:]
    assert response.headers["location"] == f"/orgs/{name}/people"


def test_create_organization_and_dashboard_lists_it(
    client: TestClient, alice: User, db: Database
) -> None:
    _create_org(client)
    assert _role(db, "acme", "alice") == OrgRole.OWNER
    page = client.get("/orgs/acme/people")
    assert "Organization acme was created." in page.text
    assert page.text.count('data-testid="member-row"') == 1
    home = client.get("/")
    assert 'href="/orgs/acme/people"' in home.text


@pytest.mark.parametrize(
    ("login", "message"),
    [
        ("alice", "already taken"),
        ("ACME", "already taken"),
        ("-acme", "may only contain"),
        ("ac..me", "may only contain"),
        ("%2e%2e", "may only contain"),
        ("settings", "reserved"),
        ("a" * 10_000, "may only contain"),
        ("", "may only contain"),
    ],
)
def test_create_organization_bad_input(
    client: TestClient, alice: User, db: Database, login: str, message: str
) -> None:
    _create_org(client)
    response = post_form(client, "/organizations/new", "/organizations/new", {"login": login})
    assert response.status_code == 422
    assert message in response.text
    with db.session() as session:
        assert [org.username for org in accounts.list_user_orgs(session, alice)] == ["acme"]


def test_people_add_change_role_remove(
    client: TestClient, alice: User, make_user: Callable[..., User], db: Database
) -> None:
    make_user("bob")
    _create_org(client)
    people = "/orgs/acme/people"
    assert post_form(client, people, people, {"username": "bob"}).status_code == 303
    assert _role(db, "acme", "bob") == OrgRole.MEMBER

    for data, message in [
        ({"username": "bob"}, "already a member"),
        ({"username": "nobody"}, "there is no user named"),
        ({"username": "x" * 10_000}, "there is no user named"),
        ({"username": "acme"}, "there is no user named"),
        ({"username": "bob\x00"}, "there is no user named"),
        ({"username": "carol", "role": "emperor"}, ""),
    ]:
        response = post_form(client, people, people, data)
        assert response.status_code == 422, data
        assert message in response.text

    response = post_form(client, people, f"{people}/bob/role", {"role": "owner"})
    assert response.status_code == 303
    assert _role(db, "acme", "bob") == OrgRole.OWNER
    assert post_form(client, people, f"{people}/bob/role", {"role": "god"}).status_code == 422
    assert post_form(client, people, f"{people}/alice/role", {"role": "member"}).status_code == 303
    # Bob is now the only owner: he can be neither demoted nor removed.
    response = post_form(client, people, f"{people}/bob/remove")
    assert response.status_code == 403  # alice is no longer an owner
    assert _role(db, "acme", "bob") == OrgRole.OWNER


def test_last_owner_is_kept(client: TestClient, alice: User, db: Database) -> None:
    _create_org(client)
    people = "/orgs/acme/people"
    response = post_form(client, people, f"{people}/alice/remove")
    assert response.status_code == 422
    assert "at least one owner" in response.text
    response = post_form(client, people, f"{people}/alice/role", {"role": "member"})
    assert response.status_code == 422
    assert _role(db, "acme", "alice") == OrgRole.OWNER


def test_members_see_but_cannot_change_and_outsiders_get_404(
    client: TestClient, alice: User, make_user: Callable[..., User], db: Database
) -> None:
    make_user("bob")
    make_user("eve")
    _create_org(client)
    assert (
        post_form(client, "/orgs/acme/people", "/orgs/acme/people", {"username": "bob"}).status_code
        == 303
    )

    bob = TestClient(client.app, base_url="http://testserver")
    log_in(bob, "bob")
    page = bob.get("/orgs/acme/people")
    assert page.status_code == 200
    assert "Add member" not in page.text
    response = post_form(bob, "/orgs/acme/people", "/orgs/acme/people", {"username": "eve"})
    assert response.status_code == 403
    assert _role(db, "acme", "eve") is None

    eve = TestClient(client.app, base_url="http://testserver")
    log_in(eve, "eve")
    assert eve.get("/orgs/acme/people").status_code == 404
    assert eve.get("/orgs/acme/teams").status_code == 404
    assert eve.get("/orgs/nope/people").status_code == 404
    assert eve.get("/orgs/alice/people").status_code == 404  # a user, not an organization
    # Organizations are public, so an outsider's change is refused rather than hidden.
    response = post_form(eve, "/", "/orgs/acme/people", {"username": "eve"})
    assert response.status_code == 403
    assert _role(db, "acme", "eve") is None


def test_teams_create_and_membership(
    client: TestClient, alice: User, make_user: Callable[..., User], db: Database
) -> None:
    make_user("bob")
    make_user("carol")
    _create_org(client)
    post_form(client, "/orgs/acme/people", "/orgs/acme/people", {"username": "bob"})
    teams = "/orgs/acme/teams"
    response = post_form(
        client,
        teams,
        teams,
        {"name": "Core Devs", "description": "The core", "permission": "write"},
    )
    assert response.status_code == 303
    team_page = response.headers["location"]
    assert team_page == "/orgs/acme/teams/core-devs"
    listing = client.get(teams)
    assert "Core Devs" in listing.text and "write" in listing.text

    for data, message in [
        ({"name": "Core Devs"}, "already exists"),
        ({"name": ""}, "name"),
        ({"name": "x" * 10_000}, "name"),
        ({"name": "ok", "permission": "superuser"}, "is not a permission"),
        ({"name": "ok", "privacy": "public"}, "privacy"),
    ]:
        response = post_form(client, teams, teams, data)
        assert response.status_code == 422, data
        assert message in response.text

    members = f"{team_page}/members"
    assert post_form(client, team_page, members, {"username": "bob"}).status_code == 303
    assert "bob" in client.get(team_page).text
    response = post_form(client, team_page, members, {"username": "carol"})
    assert response.status_code == 422
    assert "must be a member of the organization first" in response.text
    response = post_form(client, team_page, members, {"username": "bob", "role": "king"})
    assert response.status_code == 422

    assert post_form(client, team_page, f"{members}/bob/remove").status_code == 303
    assert "This team has no members yet." in client.get(team_page).text
    assert post_form(client, team_page, f"{members}/bob/remove").status_code == 404
    assert client.get("/orgs/acme/teams/nope").status_code == 404
    assert client.get("/orgs/acme/teams/no%00pe").status_code == 404
    assert client.get("/orgs/ac%00me/teams").status_code == 404
    assert client.get("/orgs/%2e%2e/teams").status_code == 404
