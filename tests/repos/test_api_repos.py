"""The repository REST API in GitHub's shapes: create, read, update, rename, transfer, delete,
topics, lists, templates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pygit2
import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import store
from tests.conftest import auth_header

API = "/api/v3"

REPOSITORY_KEYS = {
    "id",
    "node_id",
    "name",
    "full_name",
    "private",
    "owner",
    "html_url",
    "description",
    "fork",
    "url",
    "clone_url",
    "ssh_url",
    "git_url",
    "homepage",
    "size",
    "default_branch",
    "visibility",
    "archived",
    "disabled",
    "topics",
    "created_at",
    "updated_at",
    "pushed_at",
    "has_issues",
    "open_issues_count",
    "forks_count",
    "stargazers_count",
    "watchers_count",
}


@pytest.fixture
def users(db: Database) -> dict[str, User]:
    # Password-less accounts (tokens only): argon2 would dominate the tests' time.
    with db.session() as session:
        made = {
            name: accounts.create_user(session, name, f"{name}@example.com", None)
            for name in ("alice", "bob", "carol")
        }
        accounts.create_organization(session, made["alice"], "acme")
    return made


@pytest.fixture
def tokens(users: dict[str, User], make_token: Callable[..., str]) -> dict[str, dict[str, str]]:
    return {
        name: auth_header(make_token(user, ["repo", "user", "delete_repo", "admin:org"]))
        for name, user in users.items()
    }


def create(
    client: TestClient, headers: dict[str, str], path: str = "/user/repos", **body: Any
) -> dict[str, Any]:
    body.setdefault("name", "project")
    response = client.post(f"{API}{path}", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_githubs_repository_object(
    client: TestClient, tokens: dict[str, dict[str, str]], settings: Settings
) -> None:
    repo = create(
        client,
        tokens["alice"],
        name="Hello-World",
        description="This your first repo!",
        homepage="https://example.com",
        private=False,
        auto_init=True,
        gitignore_template="Python",
        license_template="mit",
    )
    assert repo.keys() >= REPOSITORY_KEYS
    assert repo["full_name"] == "alice/Hello-World"
    assert repo["owner"]["login"] == "alice" and repo["owner"]["type"] == "User"
    assert repo["private"] is False and repo["visibility"] == "public"
    assert repo["permissions"] == {
        "admin": True,
        "maintain": True,
        "push": True,
        "triage": True,
        "pull": True,
    }
    base = settings.effective_base_url
    assert repo["url"] == f"{base}/api/v3/repos/alice/Hello-World"
    assert repo["html_url"] == f"{base}/alice/Hello-World"
    assert repo["clone_url"] == f"{base}/alice/Hello-World.git"
    assert repo["ssh_url"] == (
        f"ssh://git@{settings.ssh_clone_host}:{settings.ssh_port}/alice/Hello-World.git"
    )
    assert repo["default_branch"] == "main"
    assert repo["created_at"].endswith("Z")
    assert repo["pushed_at"] is not None
    git = store.open_repository(settings, repo["id"])
    assert {entry.name for entry in git.revparse_single("main").peel(pygit2.Tree)} == {
        ".gitignore",
        "LICENSE",
        "README.md",
    }


@pytest.mark.parametrize(
    "name",
    ["..", ".", "%2e%2e", "a/b", "x.git", "x" * 101, "nul\u0000", "ünï", "-dash", "a b", "'; DROP"],
)
def test_create_refuses_bad_names_with_422(
    client: TestClient, tokens: dict[str, dict[str, str]], name: str
) -> None:
    response = client.post(f"{API}/user/repos", json={"name": name}, headers=tokens["alice"])
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Validation Failed"
    assert body["errors"][0]["field"] == "name"
    assert "documentation_url" in body


def test_create_refuses_bad_json_duplicates_and_anonymous(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    create(client, tokens["alice"], name="dup")
    again = client.post(f"{API}/user/repos", json={"name": "DUP"}, headers=tokens["alice"])
    assert again.status_code == 422
    assert again.json()["errors"][0]["code"] == "already_exists"
    assert client.post(f"{API}/user/repos", json={"name": "x"}).status_code == 401
    broken = client.post(
        f"{API}/user/repos",
        content=b"{not json",
        headers={**tokens["alice"], "Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    missing = client.post(f"{API}/user/repos", json={}, headers=tokens["alice"])
    assert missing.status_code == 422
    huge = client.post(
        f"{API}/user/repos",
        json={"name": "big", "description": "x" * 10_240},
        headers=tokens["alice"],
    )
    assert huge.status_code == 422
    for template in ("gitignore_template", "license_template"):
        unknown = client.post(
            f"{API}/user/repos", json={"name": "t", template: "../x"}, headers=tokens["alice"]
        )
        assert unknown.status_code == 422


def test_org_repositories_need_membership(
    client: TestClient, tokens: dict[str, dict[str, str]], db: Database
) -> None:
    repo = create(client, tokens["alice"], "/orgs/acme/repos", name="site", visibility="internal")
    assert repo["owner"]["type"] == "Organization"
    assert repo["organization"]["login"] == "acme"
    assert repo["visibility"] == "internal" and repo["private"] is True
    refused = client.post(f"{API}/orgs/acme/repos", json={"name": "x"}, headers=tokens["bob"])
    assert refused.status_code == 403
    with db.session() as session:
        org = accounts.get_organization(session, "acme")
        bob = accounts.get_user(session, "bob")
        assert org is not None and bob is not None
        accounts.add_org_member(session, org, bob)
    create(client, tokens["bob"], "/orgs/acme/repos", name="by-bob")
    missing = client.post(f"{API}/orgs/nope/repos", json={"name": "x"}, headers=tokens["bob"])
    assert missing.status_code == 404
    internal = client.post(
        f"{API}/user/repos", json={"name": "in", "visibility": "internal"}, headers=tokens["bob"]
    )
    assert internal.status_code == 422


def test_private_repository_is_invisible_to_outsiders(
    client: TestClient, tokens: dict[str, dict[str, str]], make_token: Callable[..., str], users
) -> None:
    create(client, tokens["alice"], name="secret", private=True)
    assert client.get(f"{API}/repos/alice/secret").status_code == 404
    assert client.get(f"{API}/repos/alice/secret", headers=tokens["bob"]).status_code == 404
    scoped = auth_header(make_token(users["alice"], ["read:user"]))
    assert client.get(f"{API}/repos/alice/secret", headers=scoped).status_code == 404
    own = client.get(f"{API}/repos/ALICE/SECRET", headers=tokens["alice"])
    assert own.status_code == 200 and own.json()["name"] == "secret"
    for path in ("/repos/alice/secret/topics", "/repos/alice/secret/collaborators"):
        assert client.get(f"{API}{path}", headers=tokens["bob"]).status_code == 404
    for bad in (
        "/repos/alice/..",
        "/repos/alice/%2e%2e",
        "/repos/alice/a%00b",
        "/repos/x/y",
        "/repos/a%00b/secret",
        "/repos/" + "a" * 10_000 + "/secret",
        "/repos/%C3%A4lice/secret",
        "/users/a%00b/repos",
        "/orgs/a%00b/repos",
    ):
        assert client.get(f"{API}{bad}", headers=tokens["alice"]).status_code == 404


def test_public_repository_for_anonymous_has_no_permissions(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    create(client, tokens["alice"], name="open")
    anonymous = client.get(f"{API}/repos/alice/open")
    assert anonymous.status_code == 200
    assert anonymous.json()["permissions"] is None
    bob = client.get(f"{API}/repos/alice/open", headers=tokens["bob"]).json()
    assert bob["permissions"]["pull"] is True and bob["permissions"]["push"] is False
    by_id = client.get(f"{API}/repositories/{bob['id']}")
    assert by_id.status_code == 200 and by_id.json()["full_name"] == "alice/open"
    assert client.get(f"{API}/repositories/99999999999999999999").status_code == 422
    assert client.get(f"{API}/repositories/424242").status_code == 404


def test_patch_by_permission_level(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    create(client, tokens["alice"], name="proj", private=True)
    for user, level in (("bob", "pull"), ("carol", "maintain")):
        added = client.put(
            f"{API}/repos/alice/proj/collaborators/{user}",
            json={"permission": level},
            headers=tokens["alice"],
        )
        assert added.status_code == 201
    reader = client.patch(
        f"{API}/repos/alice/proj", json={"description": "x"}, headers=tokens["bob"]
    )
    assert reader.status_code == 403
    maintainer = client.patch(
        f"{API}/repos/alice/proj",
        json={"name": "proj", "description": "Words", "homepage": None},
        headers=tokens["carol"],
    )
    assert maintainer.status_code == 200, maintainer.text
    assert maintainer.json()["description"] == "Words"
    renaming = client.patch(
        f"{API}/repos/alice/proj", json={"name": "other"}, headers=tokens["carol"]
    )
    assert renaming.status_code == 403
    assert renaming.json()["message"] == "Must have admin rights to Repository."
    admin = client.patch(
        f"{API}/repos/alice/proj",
        json={"private": False, "description": None, "topics": ["Python", "CLI"]},
        headers=tokens["alice"],
    )
    assert admin.status_code == 200
    body = admin.json()
    assert body["visibility"] == "public" and body["description"] is None
    assert body["topics"] == ["python", "cli"]
    bad = client.patch(
        f"{API}/repos/alice/proj", json={"visibility": "secret"}, headers=tokens["alice"]
    )
    assert bad.status_code == 422
    no_branch = client.patch(
        f"{API}/repos/alice/proj", json={"default_branch": "a..b"}, headers=tokens["alice"]
    )
    assert no_branch.status_code == 422


def test_default_branch_must_exist(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    create(client, tokens["alice"], name="init", auto_init=True)
    missing = client.patch(
        f"{API}/repos/alice/init", json={"default_branch": "develop"}, headers=tokens["alice"]
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "default_branch"
    create(client, tokens["alice"], name="empty")
    empty = client.patch(
        f"{API}/repos/alice/empty", json={"default_branch": "trunk"}, headers=tokens["alice"]
    )
    assert empty.status_code == 200 and empty.json()["default_branch"] == "trunk"


def test_rename_redirects_old_urls(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    created = create(client, tokens["alice"], name="old-name")
    renamed = client.patch(
        f"{API}/repos/alice/old-name", json={"name": "new-name"}, headers=tokens["alice"]
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "new-name"
    moved = client.get(
        f"{API}/repos/alice/old-name/topics?x=1", headers=tokens["alice"], follow_redirects=False
    )
    assert moved.status_code == 301
    expected = moved.headers["location"]
    assert expected.endswith("/api/v3/repos/alice/new-name/topics?x=1")
    assert moved.json()["message"] == "Moved Permanently"
    assert moved.json()["url"] == expected
    followed = client.get(f"{API}/repos/alice/old-name", headers=tokens["alice"])
    assert followed.status_code == 200 and followed.json()["id"] == created["id"]
    # The git data routes (branches, commits, contents) follow the repository too.
    for rest in ("branches", "commits", "contents/README.md"):
        moved = client.get(
            f"{API}/repos/alice/old-name/{rest}", headers=tokens["alice"], follow_redirects=False
        )
        assert moved.status_code == 301, rest
        assert moved.headers["location"].endswith(f"/api/v3/repos/alice/new-name/{rest}")
    write = client.patch(
        f"{API}/repos/alice/old-name",
        json={"description": "x"},
        headers=tokens["alice"],
        follow_redirects=False,
    )
    assert write.status_code == 307
    taken = create(client, tokens["alice"], name="third")
    clash = client.patch(
        f"{API}/repos/alice/third", json={"name": "NEW-NAME"}, headers=tokens["alice"]
    )
    assert clash.status_code == 422
    assert taken["name"] == "third"


def test_redirect_of_a_private_repository_is_hidden_from_outsiders(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    create(client, tokens["alice"], name="hidden", private=True)
    client.patch(f"{API}/repos/alice/hidden", json={"name": "moved"}, headers=tokens["alice"])
    outsider = client.get(
        f"{API}/repos/alice/hidden", headers=tokens["bob"], follow_redirects=False
    )
    assert outsider.status_code == 404
    anonymous = client.get(f"{API}/repos/alice/hidden", follow_redirects=False)
    assert anonymous.status_code == 404


def test_transfer_to_org_and_user(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    create(client, tokens["alice"], name="tool")
    moved = client.post(
        f"{API}/repos/alice/tool/transfer",
        json={"new_owner": "acme", "new_name": "tool-2"},
        headers=tokens["alice"],
    )
    assert moved.status_code == 202, moved.text
    assert moved.json()["full_name"] == "acme/tool-2"
    old = client.get(f"{API}/repos/alice/tool", follow_redirects=False)
    assert old.status_code == 301
    assert old.headers["location"].endswith("/api/v3/repos/acme/tool-2")
    refused = client.post(
        f"{API}/repos/acme/tool-2/transfer", json={"new_owner": "bob"}, headers=tokens["alice"]
    )
    assert refused.status_code == 403
    not_admin = client.post(
        f"{API}/repos/acme/tool-2/transfer", json={"new_owner": "bob"}, headers=tokens["bob"]
    )
    assert not_admin.status_code == 403
    nobody = client.post(
        f"{API}/repos/acme/tool-2/transfer", json={"new_owner": "..."}, headers=tokens["alice"]
    )
    assert nobody.status_code == 422
    back = client.post(
        f"{API}/repos/acme/tool-2/transfer", json={"new_owner": "alice"}, headers=tokens["alice"]
    )
    assert back.status_code == 202 and back.json()["full_name"] == "alice/tool-2"


def test_delete_removes_the_directory(
    client: TestClient,
    tokens: dict[str, dict[str, str]],
    settings: Settings,
    make_token: Callable[..., str],
    users: dict[str, User],
) -> None:
    repo = create(client, tokens["alice"], name="gone", auto_init=True)
    path = store.repository_path(settings, repo["id"])
    assert path.is_dir()
    assert client.delete(f"{API}/repos/alice/gone", headers=tokens["bob"]).status_code == 403
    without_scope = auth_header(make_token(users["alice"], ["repo"]))
    refused = client.delete(f"{API}/repos/alice/gone", headers=without_scope)
    assert refused.status_code == 403 and path.is_dir()
    assert client.delete(f"{API}/repos/alice/gone", headers=tokens["alice"]).status_code == 204
    assert not path.exists()
    assert client.get(f"{API}/repos/alice/gone", headers=tokens["alice"]).status_code == 404
    assert client.delete(f"{API}/repos/alice/gone", headers=tokens["alice"]).status_code == 404


def test_archived_repository_is_read_only(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    create(client, tokens["alice"], name="old")
    archived = client.patch(
        f"{API}/repos/alice/old", json={"archived": True}, headers=tokens["alice"]
    )
    assert archived.status_code == 200 and archived.json()["archived"] is True
    topics = client.put(
        f"{API}/repos/alice/old/topics", json={"names": ["x"]}, headers=tokens["alice"]
    )
    assert topics.status_code == 403
    assert topics.json()["message"] == "Repository was archived so is read-only."
    edit = client.patch(f"{API}/repos/alice/old", json={"homepage": "x"}, headers=tokens["alice"])
    assert edit.status_code == 403
    back = client.patch(f"{API}/repos/alice/old", json={"archived": False}, headers=tokens["alice"])
    assert back.status_code == 200 and back.json()["archived"] is False


def test_topics_get_and_put(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    create(client, tokens["alice"], name="t")
    put = client.put(
        f"{API}/repos/alice/t/topics", json={"names": ["Go", "web-dev"]}, headers=tokens["alice"]
    )
    assert put.status_code == 200 and put.json() == {"names": ["go", "web-dev"]}
    assert client.get(f"{API}/repos/alice/t/topics").json() == {"names": ["go", "web-dev"]}
    for names in (["-bad"], ["a" * 51], [f"t{i}" for i in range(21)], ["\u212a"]):
        bad = client.put(
            f"{API}/repos/alice/t/topics", json={"names": names}, headers=tokens["alice"]
        )
        assert bad.status_code == 422
    stranger = client.put(
        f"{API}/repos/alice/t/topics", json={"names": ["x"]}, headers=tokens["bob"]
    )
    assert stranger.status_code == 403


def test_lists_filter_and_paginate(
    client: TestClient, tokens: dict[str, dict[str, str]], settings: Settings
) -> None:
    for index in range(5):
        create(client, tokens["alice"], name=f"repo-{index}", private=index % 2 == 1)
    first = client.get(f"{API}/user/repos?per_page=2&sort=full_name", headers=tokens["alice"])
    assert first.status_code == 200
    assert [repo["name"] for repo in first.json()] == ["repo-0", "repo-1"]
    link = first.headers["link"]
    assert 'rel="next"' in link and 'rel="last"' in link
    assert f"{settings.effective_base_url}/api/v3/user/repos?" in link
    assert "sort=full_name" in link and "page=3" in link
    public = client.get(f"{API}/user/repos?visibility=public", headers=tokens["alice"]).json()
    assert [repo["name"] for repo in public] == ["repo-0", "repo-2", "repo-4"]
    clash = client.get(f"{API}/user/repos?type=owner&visibility=all", headers=tokens["alice"])
    assert clash.status_code == 422
    assert client.get(f"{API}/user/repos?sort=bogus", headers=tokens["alice"]).status_code == 422
    assert client.get(f"{API}/user/repos").status_code == 401
    strangers = client.get(f"{API}/users/alice/repos").json()
    assert [repo["name"] for repo in strangers] == ["repo-0", "repo-2", "repo-4"]
    own = client.get(f"{API}/users/alice/repos", headers=tokens["alice"]).json()
    assert len(own) == 5
    assert client.get(f"{API}/users/nobody/repos").status_code == 404
    create(client, tokens["alice"], "/orgs/acme/repos", name="org-pub")
    create(client, tokens["alice"], "/orgs/acme/repos", name="org-priv", private=True)
    org_public = client.get(f"{API}/orgs/acme/repos").json()
    assert [repo["name"] for repo in org_public] == ["org-pub"]
    org_all = client.get(f"{API}/orgs/acme/repos?type=private", headers=tokens["alice"]).json()
    assert [repo["name"] for repo in org_all] == ["org-priv"]
    assert client.get(f"{API}/orgs/alice/repos").status_code == 404


def test_gitignore_and_license_templates(client: TestClient) -> None:
    names = client.get(f"{API}/gitignore/templates").json()
    assert {"Python", "Node", "Go", "Rust", "Java", "C"} <= set(names)
    python = client.get(f"{API}/gitignore/templates/Python").json()
    assert python["name"] == "Python" and "__pycache__/" in python["source"]
    assert client.get(f"{API}/gitignore/templates/..%2F..%2Fetc").status_code == 404
    licenses = {item["key"]: item for item in client.get(f"{API}/licenses").json()}
    assert {"mit", "apache-2.0", "bsd-3-clause", "gpl-3.0", "mpl-2.0"} <= licenses.keys()
    assert licenses["mit"]["spdx_id"] == "MIT"
    mit = client.get(f"{API}/licenses/mit").json()
    assert "[year] [fullname]" in mit["body"] and "include-copyright" in mit["conditions"]
    assert client.get(f"{API}/licenses/nope").status_code == 404


def test_fork_lineage_and_merge_settings(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    create(client, tokens["alice"], name="proj", auto_init=True)
    plain = client.get(f"{API}/repos/alice/proj").json()
    assert plain["fork"] is False and "parent" not in plain and "source" not in plain
    assert (plain["allow_merge_commit"], plain["allow_auto_merge"]) == (True, False)
    forked = client.post(f"{API}/repos/alice/proj/forks", json={}, headers=tokens["bob"])
    assert forked.status_code == 202, forked.text
    again = client.post(
        f"{API}/repos/bob/proj/forks", json={"name": "copy"}, headers=tokens["carol"]
    )
    assert again.status_code == 202, again.text
    grandchild = client.get(f"{API}/repos/carol/copy", headers=tokens["carol"]).json()
    assert grandchild["fork"] is True
    assert grandchild["parent"]["full_name"] == "bob/proj"
    assert grandchild["source"]["full_name"] == "alice/proj"
    assert grandchild["parent"]["forks_count"] == 1
    by_id = client.get(f"{API}/repositories/{grandchild['id']}").json()
    assert by_id["parent"]["full_name"] == "bob/proj"
    assert client.get(f"{API}/repos/alice/proj").json()["forks_count"] == 1

    changed = client.patch(
        f"{API}/repos/alice/proj",
        json={
            "allow_squash_merge": False,
            "delete_branch_on_merge": True,
            "allow_merge_commit": None,
        },
        headers=tokens["alice"],
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["allow_squash_merge"] is False and body["delete_branch_on_merge"] is True
    assert body["allow_merge_commit"] is True and body["allow_rebase_merge"] is True
    listed = client.get(f"{API}/users/alice/repos").json()
    assert [repo["allow_squash_merge"] for repo in listed] == [False]
    none_left = client.patch(
        f"{API}/repos/alice/proj",
        json={"allow_merge_commit": False, "allow_rebase_merge": False},
        headers=tokens["alice"],
    )
    assert none_left.status_code == 422
    assert client.get(f"{API}/repos/alice/proj").json()["allow_merge_commit"] is True
    not_admin = client.patch(
        f"{API}/repos/alice/proj", json={"allow_auto_merge": True}, headers=tokens["bob"]
    )
    assert not_admin.status_code == 403
    assert client.get(f"{API}/repos/alice/proj").json()["allow_auto_merge"] is False
