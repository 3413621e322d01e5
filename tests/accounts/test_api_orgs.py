"""Organizations, memberships and teams over the REST API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.db.engine import Database
from tests.conftest import auth_header

ORG_FIELDS = {
    "login", "id", "node_id", "url", "repos_url", "events_url", "hooks_url", "issues_url",
    "members_url", "public_members_url", "avatar_url", "description",
}  # fmt: skip
ORG_FULL_FIELDS = ORG_FIELDS | {
    "name", "company", "blog", "location", "email", "twitter_username", "is_verified",
    "has_organization_projects", "has_repository_projects", "public_repos", "public_gists",
    "followers", "following", "html_url", "created_at", "updated_at", "type",
}  # fmt: skip
TEAM_FIELDS = {
    "id", "node_id", "url", "html_url", "name", "slug", "description", "privacy",
    "notification_setting", "permission", "members_url", "repositories_url", "parent",
}  # fmt: skip
ALL_ORG_SCOPES = ["admin:org", "user"]


@dataclass
class World:
    """acme: owner alice, member bob; carol is an outsider; boss is a site admin."""

    alice: str
    bob: str
    carol: str
    boss: str


@pytest.fixture
def world(db: Database, make_user: Callable[..., User], make_token) -> World:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    boss = make_user("boss", admin=True)
    with db.session() as session:
        owner = session.get(User, alice.id)
        member = session.get(User, bob.id)
        assert owner is not None and member is not None
        org = accounts.create_organization(session, owner, "acme", full_name="Acme Inc.")
        accounts.add_org_member(session, org, member)
    return World(
        alice=make_token(alice, ALL_ORG_SCOPES),
        bob=make_token(bob, ALL_ORG_SCOPES),
        carol=make_token(carol, ALL_ORG_SCOPES),
        boss=make_token(boss, ALL_ORG_SCOPES),
    )


def test_admin_creates_organizations(
    client: TestClient, settings, world: World, make_user: Callable[..., User]
) -> None:
    created = client.post(
        "/api/v3/admin/organizations",
        headers=auth_header(world.boss),
        json={"login": "Widgets", "admin": "carol", "profile_name": "Widgets Ltd"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) >= ORG_FIELDS
    assert body["login"] == "Widgets"
    assert body["url"] == f"{settings.effective_base_url}/api/v3/orgs/Widgets"
    membership = client.get(
        "/api/v3/orgs/widgets/memberships/carol", headers=auth_header(world.carol)
    ).json()
    assert membership["role"] == "admin" and membership["state"] == "active"
    refused = client.post(
        "/api/v3/admin/organizations",
        headers=auth_header(world.alice),
        json={"login": "mine", "admin": "alice"},
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"login": "acme", "admin": "carol"}, "login"),
        ({"login": "ACME", "admin": "carol"}, "login"),
        ({"login": "alice", "admin": "carol"}, "login"),
        ({"login": "\u0430cme2", "admin": "carol"}, "login"),
        ({"login": "-lead", "admin": "carol"}, "login"),
        ({"login": "x" * 10_240, "admin": "carol"}, "login"),
        ({"login": "new'; DROP TABLE users;--", "admin": "carol"}, "login"),
        ({"login": "settings", "admin": "carol"}, "login"),
        ({"login": "fine", "admin": "nobody"}, "admin"),
        ({"login": "fine", "admin": "acme"}, "admin"),
        ({"login": "fine"}, "admin"),
        ({"admin": "carol"}, "login"),
        ({"login": "fine", "admin": "carol", "profile_name": "p" * 10_240}, "profile_name"),
    ],
)
def test_admin_create_org_rejects_bad_input(
    client: TestClient, world: World, body: dict, field: str
) -> None:
    response = client.post(
        "/api/v3/admin/organizations", headers=auth_header(world.boss), json=body
    )
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


def test_get_org_and_lists(client: TestClient, world: World) -> None:
    body = client.get("/api/v3/orgs/ACME").json()
    assert set(body) >= ORG_FULL_FIELDS
    assert body["login"] == "acme" and body["type"] == "Organization"
    assert body["name"] == "Acme Inc."
    assert client.get("/api/v3/orgs/alice").status_code == 404
    assert client.get("/api/v3/orgs/nothing").status_code == 404
    mine = client.get("/api/v3/user/orgs", headers=auth_header(world.bob)).json()
    assert [org["login"] for org in mine] == ["acme"]
    assert client.get("/api/v3/user/orgs", headers=auth_header(world.carol)).json() == []
    assert [org["login"] for org in client.get("/api/v3/users/bob/orgs").json()] == ["acme"]
    assert client.get("/api/v3/users/acme/orgs").status_code == 404
    assert client.get("/api/v3/user/orgs").status_code == 401


def test_org_members_list_and_check(client: TestClient, world: World) -> None:
    # No public/concealed distinction: everyone sees the same list.
    for headers in ({}, auth_header(world.carol), auth_header(world.alice)):
        members = client.get("/api/v3/orgs/acme/members", headers=headers).json()
        assert [member["login"] for member in members] == ["alice", "bob"]
    admins = client.get("/api/v3/orgs/acme/members?role=admin").json()
    assert [member["login"] for member in admins] == ["alice"]
    assert client.get("/api/v3/orgs/acme/members?role=owner").status_code == 422
    page = client.get("/api/v3/orgs/acme/members?per_page=1&page=2")
    assert [member["login"] for member in page.json()] == ["bob"]
    assert 'rel="prev"' in page.headers["Link"]
    assert client.get("/api/v3/orgs/acme/members/bob").status_code == 204
    assert client.get("/api/v3/orgs/acme/members/carol").status_code == 404


def test_org_memberships(client: TestClient, world: World) -> None:
    url = "/api/v3/orgs/acme/memberships"
    mine = client.get(f"{url}/bob", headers=auth_header(world.bob)).json()
    assert mine["role"] == "member"
    assert mine["organization"]["login"] == "acme" and mine["user"]["login"] == "bob"
    # Outsiders may ask about themselves only.
    assert client.get(f"{url}/carol", headers=auth_header(world.carol)).status_code == 404
    assert client.get(f"{url}/bob", headers=auth_header(world.carol)).status_code == 403
    # Members may not change memberships; owners may.
    assert (
        client.put(f"{url}/carol", headers=auth_header(world.bob), json={"role": "member"})
    ).status_code == 403
    added = client.put(f"{url}/carol", headers=auth_header(world.alice), json={})
    assert added.status_code == 200 and added.json()["role"] == "member"
    promoted = client.put(f"{url}/carol", headers=auth_header(world.alice), json={"role": "admin"})
    assert promoted.json()["role"] == "admin"
    assert (
        client.put(f"{url}/carol", headers=auth_header(world.alice), json={"role": "owner"})
    ).status_code == 422
    assert client.put(f"{url}/nobody", headers=auth_header(world.alice)).status_code == 404
    assert client.put(f"{url}/acme", headers=auth_header(world.alice)).status_code == 404
    assert client.delete(f"{url}/carol", headers=auth_header(world.alice)).status_code == 204
    assert client.delete(f"{url}/carol", headers=auth_header(world.alice)).status_code == 404


def test_last_owner_cannot_leave_or_be_demoted(client: TestClient, world: World) -> None:
    url = "/api/v3/orgs/acme/memberships/alice"
    demoted = client.put(url, headers=auth_header(world.alice), json={"role": "member"})
    assert demoted.status_code == 422
    assert demoted.json()["errors"][0]["field"] == "role"
    assert client.delete(url, headers=auth_header(world.alice)).status_code == 422
    assert client.get(url, headers=auth_header(world.alice)).json()["role"] == "admin"


def test_membership_changes_need_admin_org_scope(
    client: TestClient, world: World, make_token, db: Database
) -> None:
    with db.session() as session:
        alice = accounts.get_user(session, "alice")
    narrow = make_token(alice, ["read:org"])
    response = client.put("/api/v3/orgs/acme/memberships/carol", headers=auth_header(narrow))
    assert response.status_code == 403
    assert response.json()["message"] == "The token lacks the admin:org scope."


# Teams -----------------------------------------------------------------------------------------


def create_team(client: TestClient, token: str, **body: object):
    return client.post("/api/v3/orgs/acme/teams", headers=auth_header(token), json=body)


def test_create_and_get_team(client: TestClient, settings, world: World) -> None:
    response = create_team(
        client,
        world.alice,
        name="Core Devs",
        description="the core",
        permission="push",
        maintainers=["bob"],
        notification_setting="notifications_disabled",
    )
    assert response.status_code == 201, response.text
    team = response.json()
    assert set(team) >= TEAM_FIELDS | {"members_count", "repos_count", "organization"}
    assert team["slug"] == "core-devs"
    assert team["permission"] == "push"
    assert team["privacy"] == "closed"
    assert team["members_count"] == 2  # the creator and the named maintainer
    assert team["organization"]["login"] == "acme"
    assert team["url"] == f"{settings.effective_base_url}/api/v3/orgs/acme/teams/core-devs"
    got = client.get("/api/v3/orgs/acme/teams/CORE-DEVS", headers=auth_header(world.bob))
    assert got.json()["id"] == team["id"]
    listed = client.get("/api/v3/orgs/acme/teams", headers=auth_header(world.bob)).json()
    assert [item["slug"] for item in listed] == ["core-devs"]
    assert set(listed[0]) >= TEAM_FIELDS
    members = client.get(
        "/api/v3/orgs/acme/teams/core-devs/members", headers=auth_header(world.bob)
    ).json()
    assert [member["login"] for member in members] == ["alice", "bob"]
    membership = client.get(
        "/api/v3/orgs/acme/teams/core-devs/memberships/bob", headers=auth_header(world.bob)
    ).json()
    assert membership["role"] == "maintainer" and membership["state"] == "active"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "!!!"}, "name"),
        ({"name": "x" * 10_240}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "ok", "privacy": "public"}, "privacy"),
        ({"name": "ok", "permission": "admin"}, "permission"),
        ({"name": "ok", "maintainers": ["carol"]}, "user"),
        ({"name": "ok", "maintainers": ["nobody"]}, "maintainers"),
        ({"name": "ok", "repo_names": ["acme/x"]}, "repo_names"),
        ({"name": "ok", "parent_team_id": 1}, "parent_team_id"),
    ],
)
def test_create_team_rejects_bad_input(
    client: TestClient, world: World, body: dict, field: str
) -> None:
    response = create_team(client, world.alice, **body)
    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert client.get("/api/v3/orgs/acme/teams", headers=auth_header(world.alice)).json() == []


def test_duplicate_team_names_differing_by_case(client: TestClient, world: World) -> None:
    assert create_team(client, world.alice, name="Ops").status_code == 201
    again = create_team(client, world.alice, name="OPS")
    assert again.status_code == 422
    assert again.json()["errors"][0]["code"] == "already_exists"


def test_team_visibility(client: TestClient, world: World) -> None:
    assert create_team(client, world.alice, name="Open").status_code == 201
    assert create_team(client, world.alice, name="Hidden", privacy="secret").status_code == 201
    assert create_team(client, world.bob, name="Nope").status_code == 403
    assert create_team(client, world.carol, name="Nope").status_code == 403
    # Outsiders are told 403, as GitHub does (the organization itself is public).
    assert (
        client.get("/api/v3/orgs/acme/teams", headers=auth_header(world.carol)).status_code == 403
    )
    assert client.get("/api/v3/orgs/acme/teams").status_code == 403
    assert (
        client.get("/api/v3/orgs/acme/teams/open", headers=auth_header(world.carol)).status_code
        == 403
    )
    # Members see closed teams; secret ones only when in them (owners and admins see all).
    bob_sees = client.get("/api/v3/orgs/acme/teams", headers=auth_header(world.bob)).json()
    assert [team["slug"] for team in bob_sees] == ["open"]
    assert (
        client.get("/api/v3/orgs/acme/teams/hidden", headers=auth_header(world.bob)).status_code
        == 404
    )
    for token in (world.alice, world.boss):
        slugs = [
            t["slug"]
            for t in client.get("/api/v3/orgs/acme/teams", headers=auth_header(token)).json()
        ]
        assert slugs == ["hidden", "open"]
    assert (
        client.get("/api/v3/orgs/acme/teams/nothing", headers=auth_header(world.bob)).status_code
        == 404
    )
    assert (
        client.get("/api/v3/orgs/nothing/teams", headers=auth_header(world.bob)).status_code == 404
    )


def test_team_memberships(client: TestClient, world: World) -> None:
    assert create_team(client, world.alice, name="Core").status_code == 201
    url = "/api/v3/orgs/acme/teams/core/memberships"
    added = client.put(f"{url}/bob", headers=auth_header(world.alice), json={"role": "member"})
    assert added.status_code == 200 and added.json()["role"] == "member"
    assert (
        client.put(
            f"{url}/bob", headers=auth_header(world.alice), json={"role": "boss"}
        ).status_code
        == 422
    )
    outsider = client.put(f"{url}/carol", headers=auth_header(world.alice))
    assert outsider.status_code == 422
    assert outsider.json()["errors"][0]["field"] == "user"
    assert client.put(f"{url}/bob", headers=auth_header(world.bob)).status_code == 403
    assert client.get(f"{url}/carol", headers=auth_header(world.alice)).status_code == 404
    assert client.delete(f"{url}/bob", headers=auth_header(world.alice)).status_code == 204
    assert client.delete(f"{url}/bob", headers=auth_header(world.alice)).status_code == 404
    assert client.get(f"{url}/bob", headers=auth_header(world.alice)).status_code == 404


def test_team_reads_need_an_org_scope(
    client: TestClient, world: World, make_token, db: Database
) -> None:
    with db.session() as session:
        bob = accounts.get_user(session, "bob")
    repo_only = make_token(bob, ["repo"])
    response = client.get("/api/v3/orgs/acme/teams", headers=auth_header(repo_only))
    assert response.status_code == 403
    assert response.headers["X-Accepted-OAuth-Scopes"] == "read:org, write:org, admin:org"
