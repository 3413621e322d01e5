"""`OCH_LFS_PROXY_TRANSFERS` on a backend that can sign (S3 on moto_server): the batch answer
points at the app's own transfer routes, uploads stream into the object's key with the SHA-256
checked on the way (no staging copy), and downloads stream back through the app."""

from __future__ import annotations

import pytest

from opencodehub.config import Settings
from opencodehub.lfs import service as lfs
from tests.lfs.conftest import LFSWorld, S3SettingsFactory, basic, oid_of
from tests.lfs.conftest import stored_lfs_keys as _keys

ALICE = basic("alice")
MiB = 1024 * 1024


@pytest.fixture
def settings(s3_settings: S3SettingsFactory) -> Settings:
    """S3-backed settings with proxied transfers (overrides tests.conftest's)."""
    # Small parts so that a test object crosses several of them.
    return s3_settings(storage_chunk_size=5 * MiB, lfs_proxy_transfers=True)


def test_batch_points_at_the_app(lfs_world: LFSWorld, moto_endpoint: str) -> None:
    content = b"through the app" * 10
    oid = oid_of(content)
    answer = lfs_world.batch("alice/secret", "upload", [{"oid": oid, "size": len(content)}], ALICE)
    assert answer.status_code == 200, answer.text
    upload = answer.json()["objects"][0]["actions"]["upload"]
    assert upload["href"].endswith(f"/alice/secret.git/info/lfs/objects/{oid}")
    assert not upload["href"].startswith(moto_endpoint)
    assert upload["header"]["Authorization"].startswith("RemoteAuth ")


def test_proxied_multipart_upload_and_download(lfs_world: LFSWorld, moto_endpoint: str) -> None:
    # 11 MiB: three S3 parts of 5 MiB, so the multipart path runs through the checking reader.
    content = (bytes(range(256)) * 4096) * 11
    oid = lfs_world.upload("alice/secret", content, ALICE)
    # Straight into the object's key: nothing was staged under lfs/tmp/.
    assert _keys(lfs_world.settings) == {lfs.object_key(oid)}
    response = lfs_world.download("alice/secret", oid, len(content), ALICE)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(content))
    assert response.content == content
    answer = lfs_world.batch(
        "alice/secret", "download", [{"oid": oid, "size": len(content)}], ALICE
    )
    href = answer.json()["objects"][0]["actions"]["download"]["href"]
    assert not href.startswith(moto_endpoint)


def test_proxied_upload_of_wrong_content_leaves_nothing(lfs_world: LFSWorld) -> None:
    content = b"the content the oid names" * 400_000  # ~10 MB: a multipart upload
    oid = oid_of(content)
    answer = lfs_world.batch("alice/secret", "upload", [{"oid": oid, "size": len(content)}], ALICE)
    put = answer.json()["objects"][0]["actions"]["upload"]
    forged = b"X" + content[1:]
    response = lfs_world.client.put(put["href"], content=forged, headers=put["header"])
    assert response.status_code == 422
    # The multipart upload was aborted: no object, and the batch still says it is missing.
    assert _keys(lfs_world.settings) == set()
    answer = lfs_world.batch(
        "alice/secret", "download", [{"oid": oid, "size": len(content)}], ALICE
    )
    assert answer.json()["objects"][0]["error"]["code"] == 404
