"""GET/PATCH /user and GET /users/{username}, in GitHub's shapes; PyGithub against a live server."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from github import Auth, Github
from sqlalchemy import update

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.accounts.security import service as security
from opencodehub.accounts.security.models import TotpDevice, WebAuthnCredential
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.conftest import LiveServer, auth_header

PUBLIC_USER_FIELDS = {
    "login", "id", "node_id", "avatar_url", "gravatar_id", "url", "html_url", "followers_url",
    "following_url", "gists_url", "starred_url", "subscriptions_url", "organizations_url",
    "repos_url", "events_url", "received_events_url", "type", "site_admin", "name", "company",
    "blog", "location", "email", "hireable", "bio", "twitter_username", "public_repos",
    "public_gists", "followers", "following", "created_at", "updated_at",
}  # fmt: skip
PRIVATE_USER_FIELDS = PUBLIC_USER_FIELDS | {
    "private_gists", "total_private_repos", "owned_private_repos", "disk_usage", "collaborators",
    "two_factor_authentication", "plan",
}  # fmt: skip


def test_get_authenticated_user_shape(
    client: TestClient, settings, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("Alice")
    body = client.get("/api/v3/user", headers=auth_header(make_token(alice))).json()
    assert set(body) >= PRIVATE_USER_FIELDS
    base = settings.effective_base_url
    assert body["login"] == "Alice"
    assert body["id"] == alice.id
    assert body["type"] == "User"
    assert body["site_admin"] is False
    assert body["url"] == f"{base}/api/v3/users/Alice"
    assert body["html_url"] == f"{base}/Alice"
    assert base64.b64decode(body["node_id"]) == f"04:User{alice.id}".encode()
    assert body["created_at"].endswith("Z") and "T" in body["created_at"]
    assert body["plan"]["name"]


def test_two_factor_authentication_tells_whether_sign_in_asks_a_second_factor(
    client: TestClient, db: Database, make_user: Callable[..., User], make_token
) -> None:
    with_app, with_key, half_enrolled, without = (
        make_user(name) for name in ("withapp", "withkey", "halfway", "plain")
    )
    with db.session() as session:
        session.add(TotpDevice(user_id=with_app.id, secret_encrypted="x", confirmed_at=utcnow()))
        # An authenticator app scanned but never confirmed does not guard the sign-in yet.
        session.add(TotpDevice(user_id=half_enrolled.id, secret_encrypted="x"))
        session.add(
            WebAuthnCredential(
                user_id=with_key.id,
                name="key",
                credential_id="Y3JlZA",
                credential_id_hash="0" * 64,
                public_key="a2V5",
            )
        )
        for user in (with_app, with_key, half_enrolled, without):
            assert security.has_two_factor(session, session.get(User, user.id)) is (
                user in (with_app, with_key)
            )

    def own_profile(user: User) -> dict:
        response = client.get("/api/v3/user", headers=auth_header(make_token(user)))
        assert response.status_code == 200
        return response.json()

    assert own_profile(with_app)["two_factor_authentication"] is True
    assert own_profile(with_key)["two_factor_authentication"] is True
    assert own_profile(half_enrolled)["two_factor_authentication"] is False
    assert own_profile(without)["two_factor_authentication"] is False
    # Only the account itself learns it: another user's profile does not carry the field.
    other = client.get("/api/v3/users/withapp", headers=auth_header(make_token(without)))
    assert "two_factor_authentication" not in other.json()


def test_get_user_by_name_any_case_and_missing(
    client: TestClient, make_user: Callable[..., User]
) -> None:
    make_user("Alice")
    body = client.get("/api/v3/users/aLiCe").json()
    assert body["login"] == "Alice"
    assert set(body) >= PUBLIC_USER_FIELDS
    assert "plan" not in body and "total_private_repos" not in body
    for name in ("nobody", "al1ce", "-alice", "a" * 40, "\u0430lice", "alice%00", "..", "%2e%2e"):
        response = client.get(f"/api/v3/users/{name}")
        assert response.status_code == 404, name
        assert response.json()["message"] == "Not Found"


def test_get_users_returns_organizations_as_github_does(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    alice = make_user("alice")
    with db.session() as session:
        owner = session.get(User, alice.id)
        assert owner is not None
        org = accounts.create_organization(session, owner, "acme", full_name="Acme")
    body = client.get("/api/v3/users/ACME").json()
    assert body["type"] == "Organization"
    assert body["name"] == "Acme"
    assert base64.b64decode(body["node_id"]) == f"012:Organization{org.id}".encode()


def test_disabled_user_is_not_found(
    client: TestClient, db: Database, make_user: Callable[..., User], make_token
) -> None:
    bob = make_user("bob")
    admin_token = make_token(make_user("boss", admin=True))
    with db.session() as session:
        session.execute(update(User).where(User.id == bob.id).values(is_active=False))
    assert client.get("/api/v3/users/bob").status_code == 404
    assert client.get("/api/v3/users/bob", headers=auth_header(admin_token)).status_code == 200


def test_patch_user(client: TestClient, make_user: Callable[..., User], make_token) -> None:
    make_user("alice")
    token = make_token(make_user("bob"), ["user"])
    response = client.patch(
        "/api/v3/user",
        headers=auth_header(token),
        json={
            "name": "Bob B",
            "blog": "https://bob.example",
            "company": "'; DROP TABLE users; --",
            "location": "Zürich",
            "bio": "hello\nworld",
            "email": "bob@example.com",
            "hireable": True,
            "unknown_field": {"ignored": 1},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Bob B"
    assert body["blog"] == "https://bob.example"
    assert body["company"] == "'; DROP TABLE users; --"
    assert body["location"] == "Zürich"
    assert body["bio"] == "hello\nworld"
    assert body["email"] == "bob@example.com"
    assert client.get("/api/v3/users/bob").json()["company"] == "'; DROP TABLE users; --"
    # Clearing a field with an empty string.
    assert (
        client.patch("/api/v3/user", headers=auth_header(token), json={"name": ""}).json()["name"]
        is None
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x" * 10_240}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"bio": "b" * 10_240}, "bio"),
        ({"blog": "javascript:alert(1)"}, "blog"),
        ({"email": "not-mine@example.com"}, "email"),
        ({"email": "not an email"}, "email"),
        ({"name": 12}, "name"),
        ({"location": ["a"]}, "location"),
    ],
)
def test_patch_user_rejects_bad_input(
    client: TestClient, make_user: Callable[..., User], make_token, body: dict, field: str
) -> None:
    token = make_token(make_user("alice"), ["user"])
    response = client.patch("/api/v3/user", headers=auth_header(token), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == "Validation Failed"
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert client.get("/api/v3/users/alice").json()["name"] is None


def test_patch_user_needs_user_scope_and_authentication(
    client: TestClient, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("alice")
    narrow = make_token(alice, ["repo"])
    response = client.patch("/api/v3/user", headers=auth_header(narrow), json={"name": "X"})
    assert response.status_code == 403
    assert client.patch("/api/v3/user", json={"name": "X"}).status_code == 401
    bad_json = client.patch(
        "/api/v3/user",
        headers={**auth_header(make_token(alice, ["user"])), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["message"] == "Problems parsing JSON"


@pytest.mark.slow
def test_pygithub_reads_user_and_keys(
    live_server: LiveServer,
    make_user: Callable[..., User],
    make_token,
    db: Database,
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    key_path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_path)],
        check=True,
        capture_output=True,
    )
    with db.session() as session:
        owner = session.get(User, alice.id)
        assert owner is not None
        accounts.update_profile(session, owner, full_name="Alice Liddell", location="Wonderland")
        accounts.add_ssh_key(session, owner, "laptop", key_path.with_suffix(".pub").read_text())
        accounts.create_organization(session, owner, "acme")
    token = make_token(alice, ["user", "read:public_key", "read:org"])
    gh = Github(base_url=live_server.url + "/api/v3", auth=Auth.Token(token), retry=None)
    me = gh.get_user()
    assert me.login == "alice"
    assert me.name == "Alice Liddell"
    assert me.location == "Wonderland"
    keys = list(me.get_keys())
    assert [key.title for key in keys] == ["laptop"]
    assert keys[0].key == " ".join(key_path.with_suffix(".pub").read_text().split()[:2])
    assert [org.login for org in me.get_orgs()] == ["acme"]
    assert gh.get_user("ALICE").name == "Alice Liddell"
    assert gh.get_organization("acme").login == "acme"
    assert gh.oauth_scopes == ["read:org", "read:public_key", "user"]
    me.edit(bio="from PyGithub")
    assert gh.get_user("alice").bio == "from PyGithub"
