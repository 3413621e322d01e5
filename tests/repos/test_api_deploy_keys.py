"""`/repos/{owner}/{repo}/keys`: a repository's deploy keys, managed by its admins."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.db.engine import Database
from tests.conftest import auth_header

API = "/api/v3"
KEYS = f"{API}/repos/alice/proj/keys"


def new_public_key(comment: str = "deploy@ci") -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = b"".join(struct.pack(">I", len(part)) + part for part in (b"ssh-ed25519", raw))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


@pytest.fixture
def tokens(db: Database, make_token: Callable[..., str], client: TestClient) -> dict[str, dict]:
    with db.session() as session:
        users = {
            name: accounts.create_user(session, name, f"{name}@example.com", None)
            for name in ("alice", "bob", "carol")
        }
    headers = {name: auth_header(make_token(user)) for name, user in users.items()}
    created = client.post(f"{API}/user/repos", json={"name": "proj"}, headers=headers["alice"])
    assert created.status_code == 201
    added = client.put(
        f"{API}/repos/alice/proj/collaborators/bob",
        json={"permission": "maintain"},
        headers=headers["alice"],
    )
    assert added.status_code == 201
    return headers


def test_add_list_get_and_delete(client: TestClient, tokens: dict[str, dict]) -> None:
    key_text = new_public_key()
    added = client.post(
        KEYS, json={"title": "CI", "key": key_text, "read_only": True}, headers=tokens["alice"]
    )
    assert added.status_code == 201, added.text
    key = added.json()
    assert key["title"] == "CI" and key["read_only"] is True and key["verified"] is True
    assert key["key"] == " ".join(key_text.split()[:2])
    assert key["url"].endswith(f"/api/v3/repos/alice/proj/keys/{key['id']}")
    assert key["created_at"].endswith("Z")
    writable = client.post(KEYS, json={"key": new_public_key("rw")}, headers=tokens["alice"])
    assert writable.status_code == 201
    # GitHub: without read_only the key can write; an untitled key is named by its comment.
    assert writable.json()["read_only"] is False and writable.json()["title"] == "rw"
    listed = client.get(KEYS, headers=tokens["alice"])
    assert [item["id"] for item in listed.json()] == [key["id"], writable.json()["id"]]
    paged = client.get(f"{KEYS}?per_page=1", headers=tokens["alice"])
    assert len(paged.json()) == 1 and 'rel="next"' in paged.headers["link"]
    one = client.get(f"{KEYS}/{key['id']}", headers=tokens["alice"])
    assert one.status_code == 200 and one.json()["id"] == key["id"]
    assert client.delete(f"{KEYS}/{key['id']}", headers=tokens["alice"]).status_code == 204
    assert client.get(f"{KEYS}/{key['id']}", headers=tokens["alice"]).status_code == 404
    assert client.delete(f"{KEYS}/{key['id']}", headers=tokens["alice"]).status_code == 404


def test_only_admins_manage_deploy_keys(client: TestClient, tokens: dict[str, dict]) -> None:
    added = client.post(KEYS, json={"key": new_public_key()}, headers=tokens["alice"])
    key_id = added.json()["id"]
    for who in ("bob", "carol"):
        assert client.get(KEYS, headers=tokens[who]).status_code == 403
        assert client.get(f"{KEYS}/{key_id}", headers=tokens[who]).status_code == 403
        refused = client.post(KEYS, json={"key": new_public_key()}, headers=tokens[who])
        assert refused.status_code == 403
        assert client.delete(f"{KEYS}/{key_id}", headers=tokens[who]).status_code == 403
    assert client.get(KEYS).status_code == 403
    # Another repository's key id is not found through this one.
    client.post(f"{API}/user/repos", json={"name": "other"}, headers=tokens["alice"])
    other = f"{API}/repos/alice/other/keys/{key_id}"
    assert client.get(other, headers=tokens["alice"]).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"key": "not a key"},
        {"key": "ssh-dss AAAAB3NzaC1kc3M= old"},
        {"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"},
        {"key": "ssh-ed25519 AAAA\u0000"},
        {"key": "x" * 30_000},
        {"title": "t"},
        {"key": ""},
    ],
)
def test_bad_keys_are_refused(client: TestClient, tokens: dict[str, dict], body: dict) -> None:
    response = client.post(KEYS, json=body, headers=tokens["alice"])
    assert response.status_code == 422
    assert client.get(KEYS, headers=tokens["alice"]).json() == []


def test_the_same_key_twice_and_bad_ids(client: TestClient, tokens: dict[str, dict]) -> None:
    key_text = new_public_key()
    assert client.post(KEYS, json={"key": key_text}, headers=tokens["alice"]).status_code == 201
    again = client.post(KEYS, json={"key": key_text}, headers=tokens["alice"])
    assert again.status_code == 422
    assert again.json()["errors"][0]["code"] == "already_exists"
    for bad in ("0", "-1", "abc", "99999999999999999999999"):
        assert client.get(f"{KEYS}/{bad}", headers=tokens["alice"]).status_code in (404, 422)
