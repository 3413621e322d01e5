"""/user/keys and /users/{username}/keys."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from tests.conftest import auth_header

KEY_FIELDS = {"id", "key", "url", "title", "created_at", "verified", "read_only"}


def generate(directory: Path, key_type: str = "ed25519", bits: int | None = None) -> str:
    path = directory / f"key_{key_type}_{bits}_{len(list(directory.iterdir()))}"
    command = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "me@host", "-f", str(path)]
    if bits:
        command += ["-b", str(bits)]
    subprocess.run(command, check=True, capture_output=True)
    return path.with_suffix(".pub").read_text()


@pytest.fixture
def alice_token(make_user: Callable[..., User], make_token) -> str:
    return make_token(make_user("alice"), ["admin:public_key"])


def test_add_list_get_delete_key(
    client: TestClient, settings, alice_token: str, tmp_path: Path
) -> None:
    text = generate(tmp_path)
    created = client.post(
        "/api/v3/user/keys", headers=auth_header(alice_token), json={"title": "laptop", "key": text}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) >= KEY_FIELDS
    assert body["key"] == " ".join(text.split()[:2])  # stored without the comment
    assert body["url"] == f"{settings.effective_base_url}/api/v3/user/keys/{body['id']}"
    assert body["verified"] is True and body["read_only"] is False
    listed = client.get("/api/v3/user/keys", headers=auth_header(alice_token)).json()
    assert [key["id"] for key in listed] == [body["id"]]
    one = client.get(f"/api/v3/user/keys/{body['id']}", headers=auth_header(alice_token))
    assert one.json() == body
    assert client.get("/api/v3/users/ALICE/keys").json() == [{"id": body["id"], "key": body["key"]}]
    deleted = client.delete(f"/api/v3/user/keys/{body['id']}", headers=auth_header(alice_token))
    assert deleted.status_code == 204 and deleted.content == b""
    assert (
        client.get(f"/api/v3/user/keys/{body['id']}", headers=auth_header(alice_token)).status_code
        == 404
    )
    assert client.get("/api/v3/users/alice/keys").json() == []


def test_keys_of_others_are_not_found(
    client: TestClient, make_user: Callable[..., User], make_token, alice_token: str, tmp_path: Path
) -> None:
    key_id = client.post(
        "/api/v3/user/keys", headers=auth_header(alice_token), json={"key": generate(tmp_path)}
    ).json()["id"]
    bob_token = make_token(make_user("bob"), ["admin:public_key"])
    assert (
        client.get(f"/api/v3/user/keys/{key_id}", headers=auth_header(bob_token)).status_code == 404
    )
    assert (
        client.delete(f"/api/v3/user/keys/{key_id}", headers=auth_header(bob_token)).status_code
        == 404
    )
    assert client.get("/api/v3/user/keys", headers=auth_header(bob_token)).json() == []
    assert client.get("/api/v3/user/keys/999999", headers=auth_header(bob_token)).status_code == 404
    for bad_id in ("abc", "0", "-1", "1.5", "99999999999999999999999", "1%00"):
        response = client.get(f"/api/v3/user/keys/{bad_id}", headers=auth_header(bob_token))
        assert response.status_code == 422, bad_id
    assert client.get("/api/v3/users/nobody/keys").status_code == 404


def test_duplicate_key_is_already_in_use(
    client: TestClient, make_user: Callable[..., User], make_token, alice_token: str, tmp_path: Path
) -> None:
    text = generate(tmp_path)
    assert (
        client.post(
            "/api/v3/user/keys", headers=auth_header(alice_token), json={"key": text}
        ).status_code
        == 201
    )
    bob_token = make_token(make_user("bob"), ["write:public_key"])
    for token in (alice_token, bob_token):
        again = client.post(
            "/api/v3/user/keys",
            headers=auth_header(token),
            json={"title": "again", "key": text.replace("me@host", "other comment")},
        )
        assert again.status_code == 422
        assert again.json()["errors"] == [
            {
                "resource": "PublicKey",
                "field": "key",
                "code": "already_exists",
                "message": "key is already in use",
            }
        ]


def test_key_scopes(
    client: TestClient, make_user: Callable[..., User], make_token, tmp_path: Path
) -> None:
    alice = make_user("alice")
    read_only = make_token(alice, ["read:public_key"])
    writer = make_token(alice, ["write:public_key"])
    unrelated = make_token(alice, ["repo", "user"])
    text = generate(tmp_path)
    assert client.get("/api/v3/user/keys", headers=auth_header(read_only)).status_code == 200
    assert client.get("/api/v3/user/keys", headers=auth_header(unrelated)).status_code == 403
    refused = client.post("/api/v3/user/keys", headers=auth_header(read_only), json={"key": text})
    assert refused.status_code == 403
    assert refused.headers["X-Accepted-OAuth-Scopes"] == "admin:public_key, write:public_key"
    created = client.post("/api/v3/user/keys", headers=auth_header(writer), json={"key": text})
    assert created.status_code == 201
    key_id = created.json()["id"]
    # Deleting needs admin:public_key, as on GitHub.
    assert (
        client.delete(f"/api/v3/user/keys/{key_id}", headers=auth_header(writer)).status_code == 403
    )
    assert client.post("/api/v3/user/keys", json={"key": text}).status_code == 401
    assert client.get("/api/v3/user/keys").status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "key", ""),
        ({"key": ""}, "key", ""),
        ({"key": 42}, "key", ""),
        ({"key": "ssh-dss AAAAB3NzaC1kc3M="}, "key", "DSA"),
        ({"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"}, "key", "private key"),
        ({"key": "ssh-ed25519 %%%notbase64"}, "key", "base64"),
        ({"key": "ssh-ed25519 AAAA" + "A" * 10_240}, "key", "too long"),
        ({"key": "ssh-ed25519 AAAA\x00"}, "key", "NUL"),
        ({"key": "'; DELETE FROM ssh_keys; --"}, "key", "not supported"),
        ({"key": "VALID", "title": "t" * 10_240}, "title", ""),
        ({"key": "VALID", "title": "bad\x00title"}, "title", ""),
    ],
)
def test_add_key_rejects_bad_input(
    client: TestClient, alice_token: str, tmp_path: Path, body: dict, field: str, fragment: str
) -> None:
    if body.get("key") == "VALID":
        body = {**body, "key": generate(tmp_path)}
    response = client.post("/api/v3/user/keys", headers=auth_header(alice_token), json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == [field]
    assert fragment in errors[0].get("message", "")
    assert client.get("/api/v3/user/keys", headers=auth_header(alice_token)).json() == []


def test_short_rsa_and_two_keys_are_refused(
    client: TestClient, alice_token: str, tmp_path: Path
) -> None:
    short = client.post(
        "/api/v3/user/keys",
        headers=auth_header(alice_token),
        json={"key": generate(tmp_path, "rsa", 1024)},
    )
    assert short.status_code == 422
    assert "2048" in short.json()["errors"][0]["message"]
    two = client.post(
        "/api/v3/user/keys",
        headers=auth_header(alice_token),
        json={"key": generate(tmp_path) + generate(tmp_path)},
    )
    assert two.status_code == 422
    assert "one key" in two.json()["errors"][0]["message"]


def test_keys_paginate_with_link_header(
    client: TestClient, settings, alice_token: str, tmp_path: Path
) -> None:
    ids = [
        client.post(
            "/api/v3/user/keys", headers=auth_header(alice_token), json={"key": generate(tmp_path)}
        ).json()["id"]
        for _ in range(3)
    ]
    first = client.get("/api/v3/user/keys?per_page=2", headers=auth_header(alice_token))
    assert [key["id"] for key in first.json()] == ids[:2]
    base = f"{settings.effective_base_url}/api/v3/user/keys"
    assert first.headers["Link"] == (
        f'<{base}?page=2&per_page=2>; rel="next", <{base}?page=2&per_page=2>; rel="last"'
    )
    second = client.get("/api/v3/user/keys?per_page=2&page=2", headers=auth_header(alice_token))
    assert [key["id"] for key in second.json()] == ids[2:]
    assert 'rel="next"' not in second.headers["Link"]
    assert f'<{base}?page=1&per_page=2>; rel="prev"' in second.headers["Link"]
    beyond = client.get("/api/v3/user/keys?per_page=2&page=50", headers=auth_header(alice_token))
    assert beyond.json() == []
    assert (
        client.get("/api/v3/user/keys?per_page=abc", headers=auth_header(alice_token)).status_code
        == 422
    )
    public = client.get("/api/v3/users/alice/keys?per_page=1&page=3")
    assert [key["id"] for key in public.json()] == ids[2:]
    assert 'rel="first"' in public.headers["Link"]
