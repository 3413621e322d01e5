"""The LFS API over HTTP (TestClient, local backend): batch, proxied transfers, verify, locks,
authentication and bad input."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.lfs import service as lfs
from opencodehub.lfs.models import LFSObject, RepositoryLFSObject
from opencodehub.repos import service as repos
from opencodehub.repos.models import Collaborator, Repository
from opencodehub.storage import build_storage
from tests.lfs.conftest import MEDIA, LFSWorld, basic, oid_of

ALICE = basic("alice")
BOB = basic("bob")


def _add_collaborator(
    world: LFSWorld, repo: Repository, user: User, permission: Permission
) -> None:
    with world.db.session() as session:
        session.add(Collaborator(repository_id=repo.id, user_id=user.id, permission=permission))


def _storage_keys(world: LFSWorld) -> list[str]:
    storage = build_storage(world.settings)
    return sorted(info.key for info in storage.list("lfs/"))


# Round trip -------------------------------------------------------------------------------------


def test_upload_verify_download_round_trip(lfs_world: LFSWorld) -> None:
    content = b"large file content\n" * 1000
    oid = lfs_world.upload("alice/hello", content, ALICE)
    assert _storage_keys(lfs_world) == [lfs.object_key(oid)]
    # Anonymous callers read a public repository's objects.
    response = lfs_world.download("alice/hello", oid, len(content), None)
    assert response.status_code == 200
    assert response.content == content
    # Without `.git` too, and a second upload has nothing to send.
    again = lfs_world.batch("alice/hello", "upload", [{"oid": oid, "size": len(content)}], ALICE)
    assert again.headers["content-type"].startswith(MEDIA)
    assert again.json() == {
        "transfer": "basic",
        "hash_algo": "sha256",
        "objects": [{"oid": oid, "size": len(content)}],
    }
    plain = lfs_world.client.post(
        "/alice/hello/info/lfs/objects/batch",
        json={"operation": "download", "objects": [{"oid": oid, "size": len(content)}]},
        headers={"Accept": MEDIA, "Content-Type": MEDIA},
    )
    assert plain.status_code == 200
    assert plain.json()["objects"][0]["actions"]["download"]["href"].endswith(f"/objects/{oid}")
    with lfs_world.db.session() as session:
        repository = session.get(Repository, lfs_world.public.id)
        assert lfs.repository_lfs_usage(session, repository) == len(content)


def test_empty_object(lfs_world: LFSWorld) -> None:
    oid = lfs_world.upload("alice/hello", b"", ALICE)
    assert lfs_world.download("alice/hello", oid, 0, ALICE).content == b""


# Bad input --------------------------------------------------------------------------------------

GOOD_OID = "a" * 64


@pytest.mark.parametrize(
    ("oid", "size", "code"),
    [
        ("A" * 64, 1, 422),  # uppercase
        ("a" * 63, 1, 422),
        ("a" * 65, 1, 422),
        ("../" + "a" * 61, 1, 422),
        ("%2e%2e" + "a" * 58, 1, 422),
        ("a" * 63 + "\x00", 1, 422),
        ("\u0430" * 64, 1, 422),  # Cyrillic look-alike
        ("' OR 1=1 --", 1, 422),
        ("-" + "a" * 63, 1, 422),
        ("a" * 10_000, 1, 422),
        (GOOD_OID, -1, 422),
        (GOOD_OID, 10**30, 413),
        (GOOD_OID, 5 * 1024**3 + 1, 413),
    ],
)
@pytest.mark.parametrize("operation", ["upload", "download"])
def test_bad_objects_get_per_object_errors(
    lfs_world: LFSWorld, oid: str, size: int, code: int, operation: str
) -> None:
    response = lfs_world.batch(
        "alice/hello", operation, [{"oid": oid, "size": size}, {"oid": GOOD_OID, "size": 3}], ALICE
    )
    assert response.status_code == 200, response.text
    bad, good = response.json()["objects"]
    assert bad["error"]["code"] == code
    assert len(bad["oid"]) <= 128
    assert "actions" not in bad
    if operation == "upload":
        assert set(good["actions"]) == {"upload", "verify"}
    else:
        assert good["error"]["code"] == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"operation": "delete", "objects": []}, 422),
        ({"operation": "upload"}, 422),
        ({"operation": "upload", "objects": [{"oid": GOOD_OID, "size": "x"}]}, 422),
        ({"operation": "upload", "objects": [], "hash_algo": "sha1"}, 409),
        ({"operation": "upload", "objects": [], "transfers": ["tus"]}, 422),
        ({"operation": "upload", "objects": [{"oid": GOOD_OID, "size": 1}] * 1001}, 422),
    ],
)
def test_bad_batch_requests(lfs_world: LFSWorld, body: dict[str, Any], status: int) -> None:
    response = lfs_world.post("/alice/hello.git/info/lfs/objects/batch", body, ALICE)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(MEDIA)
    assert response.json()["message"]
    assert "documentation_url" in response.json()


def test_malformed_json_and_content_type(lfs_world: LFSWorld) -> None:
    path = "/alice/hello.git/info/lfs/objects/batch"
    broken = lfs_world.client.post(
        path, content=b"{not json", headers={"Content-Type": MEDIA, "Authorization": ALICE}
    )
    assert broken.status_code == 422
    wrong = lfs_world.client.post(
        path, content=b"{}", headers={"Content-Type": "text/plain", "Authorization": ALICE}
    )
    assert wrong.status_code == 415
    huge = lfs_world.client.post(
        path, content=b" " * (2 * 1024 * 1024), headers={"Content-Type": MEDIA}
    )
    assert huge.status_code == 413


def test_size_limit_setting(lfs_world: LFSWorld) -> None:
    lfs_world.settings.lfs_max_object_size = 10
    response = lfs_world.batch("alice/hello", "upload", [{"oid": GOOD_OID, "size": 11}], ALICE)
    assert response.json()["objects"][0]["error"]["code"] == 413
    fine = lfs_world.batch("alice/hello", "upload", [{"oid": GOOD_OID, "size": 10}], ALICE)
    assert "error" not in fine.json()["objects"][0]


def _upload_actions(world: LFSWorld, repo: str, oid: str, size: int, auth: str) -> dict[str, Any]:
    answer = world.batch(repo, "upload", [{"oid": oid, "size": size}], auth)
    return answer.json()["objects"][0]["actions"]


@pytest.mark.parametrize(
    "sent",
    [b"not the declared content!", b"short", b"longer than the declared content, by far"],
)
def test_mismatched_upload_leaves_nothing(lfs_world: LFSWorld, sent: bytes) -> None:
    content = b"the declared content....."
    oid = oid_of(content)
    actions = _upload_actions(lfs_world, "alice/hello", oid, len(content), ALICE)
    put = actions["upload"]
    response = lfs_world.client.put(put["href"], content=sent, headers=put["header"])
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(MEDIA)
    assert _storage_keys(lfs_world) == []
    check = actions["verify"]
    verified = lfs_world.post(check["href"], {"oid": oid, "size": len(content)}, **check["header"])
    assert verified.status_code == 404
    answer = lfs_world.batch("alice/hello", "download", [{"oid": oid, "size": len(content)}])
    assert answer.json()["objects"][0]["error"]["code"] == 404


def test_interrupted_upload_leaves_nothing(lfs_world: LFSWorld) -> None:
    """A body that stops midway (the client went away) is discarded by the storage put."""
    content = b"x" * 100_000
    oid = oid_of(content)
    storage = build_storage(lfs_world.settings)

    def broken_body() -> Iterator[bytes]:
        yield content[:50_000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        lfs.store_upload(storage, oid, len(content), broken_body())
    assert _storage_keys(lfs_world) == []


def test_transfer_tokens_are_bound(lfs_world: LFSWorld) -> None:
    content = b"bound content"
    oid = oid_of(content)
    put = _upload_actions(lfs_world, "alice/hello", oid, len(content), ALICE)["upload"]
    other = oid_of(b"other")
    # Another oid, another repository, no token, a forged token: all refused.
    href_other = put["href"].replace(oid, other)
    assert (
        lfs_world.client.put(href_other, content=b"other", headers=put["header"]).status_code == 401
    )
    href_repo = put["href"].replace("alice/hello", "alice/secret")
    assert (
        lfs_world.client.put(href_repo, content=content, headers=put["header"]).status_code == 401
    )
    assert lfs_world.client.put(put["href"], content=content).status_code == 401
    forged = {"Authorization": put["header"]["Authorization"][:-4] + "AAAA"}
    assert lfs_world.client.put(put["href"], content=content, headers=forged).status_code == 401
    # A PUT token does not download.
    assert lfs_world.client.get(put["href"], headers=put["header"]).status_code == 401
    assert _storage_keys(lfs_world) == []


# Scoping and permissions ------------------------------------------------------------------------


def test_objects_are_scoped_to_their_repository(lfs_world: LFSWorld) -> None:
    content = b"alice's secret payload"
    oid = lfs_world.upload("alice/secret", content, ALICE)
    # Bob knows the oid, but his repository never received it.
    answer = lfs_world.batch("bob/mine", "download", [{"oid": oid, "size": len(content)}], BOB)
    assert answer.json()["objects"][0]["error"]["code"] == 404
    # Claiming it for upload, then verifying without sending it, links nothing.
    actions = _upload_actions(lfs_world, "bob/mine", oid, len(content), BOB)
    check = actions["verify"]
    verified = lfs_world.post(check["href"], {"oid": oid, "size": len(content)}, **check["header"])
    assert verified.status_code == 404
    answer = lfs_world.batch("bob/mine", "download", [{"oid": oid, "size": len(content)}], BOB)
    assert answer.json()["objects"][0]["error"]["code"] == 404
    # Sending the real content proves possession: then bob's repository has it.
    lfs_world.upload("bob/mine", content, basic("bob"))
    assert lfs_world.download("bob/mine", oid, len(content), BOB).content == content
    with lfs_world.db.session() as session:
        assert session.query(LFSObject).count() == 1
        assert session.query(RepositoryLFSObject).count() == 2


def test_forks_read_their_parents_objects(lfs_world: LFSWorld) -> None:
    content = b"inherited"
    oid = lfs_world.upload("alice/secret", content, ALICE)
    with lfs_world.db.session() as session:
        fork = session.get(Repository, lfs_world.bobs.id)
        assert fork is not None
        fork.fork_parent_id = lfs_world.private.id
    assert lfs_world.download("bob/mine", oid, len(content), BOB).content == content


def test_authentication_like_git(lfs_world: LFSWorld, make_token: Any) -> None:
    objects = [{"oid": GOOD_OID, "size": 1}]
    # Anonymous on a private (or missing) repository: asked for credentials.
    for repo in ("alice/secret", "alice/nothing"):
        response = lfs_world.batch(repo, "download", objects)
        assert response.status_code == 401
        assert response.headers["lfs-authenticate"] == 'Basic realm="OpenCodeHub"'
    # Anonymous upload to a public repository: also asked.
    assert lfs_world.batch("alice/hello", "upload", objects).status_code == 401
    # Bad credentials: 401, never a silent fall-back to anonymous.
    assert (
        lfs_world.batch("alice/hello", "download", objects, basic("alice", "wrong")).status_code
        == 401
    )
    # Signed in without access: 404 for what bob may not see, 403 for what he may not change.
    assert lfs_world.batch("alice/secret", "download", objects, BOB).status_code == 404
    assert lfs_world.batch("alice/hello", "upload", objects, BOB).status_code == 403
    # A PAT as the Basic password, as `token`, and as `Bearer`.
    token = make_token(lfs_world.alice)
    for header in (basic("alice", token), f"token {token}", f"Bearer {token}"):
        assert lfs_world.batch("alice/secret", "upload", objects, header).status_code == 200
    # A token without the repo scope cannot touch a private repository.
    narrow = make_token(lfs_world.alice, scopes=["public_repo"])
    assert (
        lfs_world.batch("alice/secret", "download", objects, f"token {narrow}").status_code == 404
    )
    # A read-only collaborator downloads but does not upload.
    _add_collaborator(lfs_world, lfs_world.private, lfs_world.bob, Permission.READ)
    assert lfs_world.batch("alice/secret", "download", objects, BOB).status_code == 200
    assert lfs_world.batch("alice/secret", "upload", objects, BOB).status_code == 403


def test_archived_repository_refuses_uploads(lfs_world: LFSWorld) -> None:
    content = b"before archiving"
    oid = lfs_world.upload("alice/hello", content, ALICE)
    with lfs_world.db.session() as session:
        repo = session.get(Repository, lfs_world.public.id)
        alice = session.get(User, lfs_world.alice.id)
        assert repo is not None and alice is not None
        repos.archive_repository(session, lfs_world.settings, Actor(user=alice), repo)
    response = lfs_world.batch("alice/hello", "upload", [{"oid": GOOD_OID, "size": 1}], ALICE)
    assert response.status_code == 403
    assert lfs_world.download("alice/hello", oid, len(content), ALICE).content == content


def test_ssh_tokens(lfs_world: LFSWorld) -> None:
    """What `git-lfs-authenticate` hands out works on the API, within its bounds."""
    with lfs_world.db.session() as session:
        alice = session.get(User, lfs_world.alice.id)
        actor = Actor(user=alice, method="ssh_key")
        upload = lfs.ssh_authenticate(
            session, lfs_world.settings, actor, "alice", "secret", "upload"
        )
        download = lfs.ssh_authenticate(
            session, lfs_world.settings, actor, "alice", "secret.git", "download"
        )
    assert upload["href"] == f"{lfs_world.settings.effective_base_url}/alice/secret.git/info/lfs"
    assert upload["expires_in"] == lfs.SSH_TOKEN_EXPIRES_SECONDS
    up = upload["header"]["Authorization"]  # type: ignore[index]
    down = download["header"]["Authorization"]  # type: ignore[index]
    objects = [{"oid": GOOD_OID, "size": 1}]
    assert lfs_world.batch("alice/secret", "upload", objects, up).status_code == 200
    assert lfs_world.batch("alice/secret", "download", objects, down).status_code == 200
    assert lfs_world.batch("alice/secret", "upload", objects, down).status_code == 403
    # Bound to its repository, and unforgeable.
    assert lfs_world.batch("alice/hello", "upload", objects, up).status_code == 404
    assert lfs_world.batch("alice/secret", "upload", objects, up[:-3] + "xyz").status_code == 401
    # Bob cannot get one for alice's private repository.
    with lfs_world.db.session() as session:
        bob = session.get(User, lfs_world.bob.id)
        with pytest.raises(lfs.NotFound):
            lfs.ssh_authenticate(
                session, lfs_world.settings, Actor(user=bob), "alice", "secret", "download"
            )


# Locks ------------------------------------------------------------------------------------------


def _lock(world: LFSWorld, repo: str, path: str, auth: str) -> Any:
    return world.post(f"/{repo}.git/info/lfs/locks", {"path": path, "ref": {"name": "main"}}, auth)


def test_locks_with_two_users(lfs_world: LFSWorld) -> None:
    _add_collaborator(lfs_world, lfs_world.public, lfs_world.bob, Permission.WRITE)
    created = _lock(lfs_world, "alice/hello", "assets/big.bin", ALICE)
    assert created.status_code == 201, created.text
    lock = created.json()["lock"]
    assert lock["path"] == "assets/big.bin"
    assert lock["owner"] == {"name": "alice"}
    assert lock["locked_at"].endswith("Z")
    taken = _lock(lfs_world, "alice/hello", "assets/big.bin", BOB)
    assert taken.status_code == 409
    assert taken.json()["lock"]["id"] == lock["id"]
    # A path differing only in case is another file.
    assert _lock(lfs_world, "alice/hello", "assets/BIG.bin", BOB).status_code == 201

    listed = lfs_world.client.get("/alice/hello.git/info/lfs/locks", headers={"Accept": MEDIA})
    assert [entry["path"] for entry in listed.json()["locks"]] == [
        "assets/big.bin",
        "assets/BIG.bin",
    ]
    by_path = lfs_world.client.get("/alice/hello.git/info/lfs/locks?path=assets/big.bin")
    assert [entry["id"] for entry in by_path.json()["locks"]] == [lock["id"]]
    by_id = lfs_world.client.get(f"/alice/hello.git/info/lfs/locks?id={lock['id']}")
    assert len(by_id.json()["locks"]) == 1
    page = lfs_world.client.get("/alice/hello.git/info/lfs/locks?limit=1")
    assert len(page.json()["locks"]) == 1
    rest = lfs_world.client.get(
        f"/alice/hello.git/info/lfs/locks?cursor={page.json()['next_cursor']}"
    )
    assert [entry["path"] for entry in rest.json()["locks"]] == ["assets/BIG.bin"]
    assert lfs_world.client.get("/alice/hello.git/info/lfs/locks?limit=0").status_code == 422
    assert lfs_world.client.get("/alice/hello.git/info/lfs/locks?cursor=-1").status_code == 422

    verified = lfs_world.post("/alice/hello.git/info/lfs/locks/verify", {}, BOB)
    assert verified.status_code == 200
    assert [entry["path"] for entry in verified.json()["ours"]] == ["assets/BIG.bin"]
    assert [entry["path"] for entry in verified.json()["theirs"]] == ["assets/big.bin"]

    unlock = f"/alice/hello.git/info/lfs/locks/{lock['id']}/unlock"
    # Bob may not unlock alice's lock, not even by force (he is no admin).
    assert lfs_world.post(unlock, {}, BOB).status_code == 403
    assert lfs_world.post(unlock, {"force": True}, BOB).status_code == 403
    released = lfs_world.post(unlock, {}, ALICE)
    assert released.status_code == 200
    assert released.json()["lock"]["id"] == lock["id"]
    assert lfs_world.post(unlock, {}, ALICE).status_code == 404
    # The owner (an admin) may force-unlock bob's lock.
    bobs = lfs_world.client.get("/alice/hello.git/info/lfs/locks").json()["locks"][0]
    forced = lfs_world.post(
        f"/alice/hello.git/info/lfs/locks/{bobs['id']}/unlock", {"force": True}, ALICE
    )
    assert forced.status_code == 200
    assert lfs_world.client.get("/alice/hello.git/info/lfs/locks").json()["locks"] == []


def test_locks_are_scoped_and_need_write(lfs_world: LFSWorld) -> None:
    lock = _lock(lfs_world, "alice/secret", "a.bin", ALICE).json()["lock"]
    # Bob cannot see alice's private repository: 404; on the public one he may not write: 403.
    assert _lock(lfs_world, "alice/secret", "b.bin", BOB).status_code == 404
    assert _lock(lfs_world, "alice/hello", "b.bin", BOB).status_code == 403
    assert lfs_world.post("/alice/hello.git/info/lfs/locks/verify", {}, BOB).status_code == 403
    assert _lock(lfs_world, "alice/hello", "b.bin", "").status_code == 401
    listing = lfs_world.client.get("/alice/secret.git/info/lfs/locks")
    assert listing.status_code == 401
    # A lock id from another repository is not found there.
    unlock = f"/alice/hello.git/info/lfs/locks/{lock['id']}/unlock"
    assert lfs_world.post(unlock, {"force": True}, ALICE).status_code == 404
    assert (
        lfs_world.post("/alice/hello.git/info/lfs/locks/abc/unlock", {}, ALICE).status_code == 404
    )


@pytest.mark.parametrize(
    "path",
    [
        "",
        "../etc/passwd",
        "a/../b",
        "/abs.bin",
        "a//b",
        "./a",
        "a\x00b",
        "a\nb",
        "a\\b",
        "x" * 5000,
    ],
)
def test_bad_lock_paths(lfs_world: LFSWorld, path: str) -> None:
    response = _lock(lfs_world, "alice/hello", path, ALICE)
    assert response.status_code == 422, response.text
    assert response.json()["message"]


@pytest.mark.parametrize("path", ["%2e%2e/x", "-rf.bin", "dir/ünïcödé.bin", "'; DROP TABLE x; --"])
def test_unusual_but_valid_lock_paths(lfs_world: LFSWorld, path: str) -> None:
    response = _lock(lfs_world, "alice/hello", path, ALICE)
    assert response.status_code == 201, response.text
    assert response.json()["lock"]["path"] == path


def test_store_upload_rejects_wrong_content_without_trace(lfs_world: LFSWorld) -> None:
    storage = build_storage(lfs_world.settings)
    with pytest.raises(lfs.ContentMismatch):
        lfs.store_upload(storage, oid_of(b"abc"), 3, io.BytesIO(b"abd"))
    assert _storage_keys(lfs_world) == []
