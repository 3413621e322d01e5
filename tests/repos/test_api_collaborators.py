"""`/repos/{owner}/{repo}/collaborators`: add (201 or 204), check, list, permission, remove."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.db.engine import Database
from tests.conftest import auth_header

API = "/api/v3"
BASE = f"{API}/repos/alice/proj/collaborators"


@pytest.fixture
def tokens(db: Database, make_token: Callable[..., str]) -> dict[str, dict[str, str]]:
    with db.session() as session:
        users: dict[str, User] = {
            name: accounts.create_user(session, name, f"{name}@example.com", None)
            for name in ("alice", "bob", "carol", "dave")
        }
        accounts.create_organization(session, users["alice"], "acme")
    return {name: auth_header(make_token(user)) for name, user in users.items()}


@pytest.fixture
def private_repo(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    response = client.post(
        f"{API}/user/repos", json={"name": "proj", "private": True}, headers=tokens["alice"]
    )
    assert response.status_code == 201


def test_add_returns_an_invitation_then_204(
    client: TestClient, tokens: dict[str, dict[str, str]], private_repo: None
) -> None:
    added = client.put(f"{BASE}/bob", json={"permission": "triage"}, headers=tokens["alice"])
    assert added.status_code == 201
    invitation = added.json()
    assert invitation["invitee"]["login"] == "bob"
    assert invitation["inviter"]["login"] == "alice"
    assert invitation["permissions"] == "triage"
    assert invitation["repository"]["full_name"] == "alice/proj"
    again = client.put(f"{BASE}/bob", json={"permission": "push"}, headers=tokens["alice"])
    assert again.status_code == 204 and again.content == b""
    # No body at all means push, as on GitHub.
    assert client.put(f"{BASE}/carol", headers=tokens["alice"]).status_code == 201
    permission = client.get(f"{BASE}/carol/permission", headers=tokens["alice"]).json()
    assert permission["permission"] == "write" and permission["role_name"] == "write"
    assert permission["user"]["permissions"]["push"] is True


@pytest.mark.parametrize(
    ("username", "body", "status"),
    [
        ("alice", {"permission": "push"}, 422),  # the owner
        ("acme", {"permission": "push"}, 404),  # an organization
        ("nobody", {"permission": "push"}, 404),
        ("bob", {"permission": "superuser"}, 422),
        ("bob", {"permission": "x" * 10_000}, 422),
        ("%2e%2e", {"permission": "push"}, 404),
        ("bob%00", {"permission": "push"}, 404),
    ],
)
def test_add_refuses_bad_input(
    client: TestClient,
    tokens: dict[str, dict[str, str]],
    private_repo: None,
    username: str,
    body: dict[str, str],
    status: int,
) -> None:
    response = client.put(f"{BASE}/{username}", json=body, headers=tokens["alice"])
    assert response.status_code == status, response.text


def test_only_admins_manage_and_outsiders_see_nothing(
    client: TestClient, tokens: dict[str, dict[str, str]], private_repo: None
) -> None:
    client.put(f"{BASE}/bob", json={"permission": "push"}, headers=tokens["alice"])
    writer = client.put(f"{BASE}/carol", json={"permission": "pull"}, headers=tokens["bob"])
    assert writer.status_code == 403
    outsider = client.put(f"{BASE}/carol", json={"permission": "admin"}, headers=tokens["carol"])
    assert outsider.status_code == 404
    assert client.get(BASE, headers=tokens["carol"]).status_code == 404
    assert client.get(BASE).status_code == 404
    # A reader can see the repository but not manage access to it.
    client.put(f"{BASE}/dave", json={"permission": "pull"}, headers=tokens["alice"])
    assert client.get(BASE, headers=tokens["dave"]).status_code == 403
    assert client.delete(f"{BASE}/bob", headers=tokens["dave"]).status_code == 403


def test_list_check_permission_and_remove(
    client: TestClient, tokens: dict[str, dict[str, str]], private_repo: None
) -> None:
    client.put(f"{BASE}/bob", json={"permission": "maintain"}, headers=tokens["alice"])
    listed = client.get(BASE, headers=tokens["alice"])
    assert listed.status_code == 200
    assert [(item["login"], item["role_name"]) for item in listed.json()] == [
        ("alice", "admin"),
        ("bob", "maintain"),
    ]
    assert listed.json()[1]["permissions"] == {
        "pull": True,
        "triage": True,
        "push": True,
        "maintain": True,
        "admin": False,
    }
    paged = client.get(f"{BASE}?per_page=1", headers=tokens["alice"])
    assert len(paged.json()) == 1 and 'rel="next"' in paged.headers["link"]
    admins = client.get(f"{BASE}?permission=admin", headers=tokens["alice"]).json()
    assert [item["login"] for item in admins] == ["alice"]
    assert client.get(f"{BASE}?affiliation=bogus", headers=tokens["alice"]).status_code == 422
    assert client.get(f"{BASE}/bob", headers=tokens["alice"]).status_code == 204
    assert client.get(f"{BASE}/carol", headers=tokens["alice"]).status_code == 404
    assert client.get(f"{BASE}/nobody", headers=tokens["alice"]).status_code == 404
    none = client.get(f"{BASE}/carol/permission", headers=tokens["alice"]).json()
    assert none == {"permission": "none", "role_name": "none", "user": None}
    maintain = client.get(f"{BASE}/bob/permission", headers=tokens["alice"]).json()
    assert maintain["permission"] == "write" and maintain["role_name"] == "maintain"
    assert client.delete(f"{BASE}/bob", headers=tokens["alice"]).status_code == 204
    assert client.get(f"{API}/repos/alice/proj", headers=tokens["bob"]).status_code == 404
    # Removing someone who is not a collaborator is fine; someone who does not exist is not.
    assert client.delete(f"{BASE}/carol", headers=tokens["alice"]).status_code == 204
    assert client.delete(f"{BASE}/nobody", headers=tokens["alice"]).status_code == 404


def test_each_permission_level_on_a_private_repository(
    client: TestClient, tokens: dict[str, dict[str, str]], private_repo: None
) -> None:
    expectations = {
        "pull": {"get": 200, "patch_description": 403, "patch_name": 403, "collaborators": 403},
        "triage": {"get": 200, "patch_description": 403, "patch_name": 403, "collaborators": 403},
        "push": {"get": 200, "patch_description": 403, "patch_name": 403, "collaborators": 200},
        "maintain": {"get": 200, "patch_description": 200, "patch_name": 403, "collaborators": 200},
        "admin": {"get": 200, "patch_description": 200, "patch_name": 200, "collaborators": 200},
    }
    for level, expected in expectations.items():
        client.put(f"{BASE}/bob", json={"permission": level}, headers=tokens["alice"])
        seen = {
            "get": client.get(f"{API}/repos/alice/proj", headers=tokens["bob"]).status_code,
            "patch_description": client.patch(
                f"{API}/repos/alice/proj", json={"description": level}, headers=tokens["bob"]
            ).status_code,
            "collaborators": client.get(BASE, headers=tokens["bob"]).status_code,
            "patch_name": client.patch(
                f"{API}/repos/alice/proj", json={"name": "renamed"}, headers=tokens["bob"]
            ).status_code,
        }
        if seen["patch_name"] == 200:
            client.patch(
                f"{API}/repos/alice/renamed", json={"name": "proj"}, headers=tokens["alice"]
            )
        assert seen == expected, level
        permissions = client.get(f"{API}/repos/alice/proj", headers=tokens["bob"]).json()
        assert permissions["permissions"][
            {"pull": "pull", "triage": "triage", "push": "push"}.get(level, level)
        ]
