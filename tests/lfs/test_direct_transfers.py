"""Direct-to-backend transfers (S3 on moto_server): clients PUT to a signed URL for a staging
key, and only `verify` — after checking size and SHA-256 — puts the object in place and links it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from opencodehub.config import Settings
from opencodehub.lfs import service as lfs
from tests.lfs.conftest import LFSWorld, S3SettingsFactory, basic, oid_of
from tests.lfs.conftest import stored_lfs_keys as _keys

ALICE = basic("alice")


@pytest.fixture
def settings(s3_settings: S3SettingsFactory) -> Settings:
    """S3-backed settings (overrides tests.conftest's)."""
    return s3_settings()


def _start_upload(world: LFSWorld, content: bytes) -> dict[str, Any]:
    answer = world.batch(
        "alice/secret", "upload", [{"oid": oid_of(content), "size": len(content)}], ALICE
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["objects"][0]["actions"]


def _verify(world: LFSWorld, actions: dict[str, Any], oid: str, size: int) -> httpx.Response:
    check = actions["verify"]
    return world.post(check["href"], {"oid": oid, "size": size}, **check["header"])


def test_direct_upload_and_download(lfs_world: LFSWorld, moto_endpoint: str) -> None:
    content = b"straight to the bucket" * 100
    oid = oid_of(content)
    actions = _start_upload(lfs_world, content)
    put = actions["upload"]
    assert put["href"].startswith(moto_endpoint)
    assert f"lfs/tmp/{lfs_world.private.id}/{oid}" in put["href"]
    assert httpx.put(put["href"], content=content).status_code == 200
    # Uploaded but not verified: not downloadable, not in place.
    assert _keys(lfs_world.settings) == {lfs.staging_key(lfs_world.private.id, oid)}
    answer = lfs_world.batch(
        "alice/secret", "download", [{"oid": oid, "size": len(content)}], ALICE
    )
    assert answer.json()["objects"][0]["error"]["code"] == 404

    assert _verify(lfs_world, actions, oid, len(content)).status_code == 200
    assert _keys(lfs_world.settings) == {lfs.object_key(oid)}
    answer = lfs_world.batch(
        "alice/secret", "download", [{"oid": oid, "size": len(content)}], ALICE
    )
    action = answer.json()["objects"][0]["actions"]["download"]
    assert action["href"].startswith(moto_endpoint)
    assert httpx.get(action["href"]).content == content


@pytest.mark.parametrize("sent", [b"wrong content, same size!", b"short"])
def test_direct_upload_of_wrong_content_is_rejected_at_verify(
    lfs_world: LFSWorld, sent: bytes
) -> None:
    content = b"the content the oid names"
    oid = oid_of(content)
    actions = _start_upload(lfs_world, content)
    assert httpx.put(actions["upload"]["href"], content=sent).status_code == 200
    assert _verify(lfs_world, actions, oid, len(content)).status_code == 422
    # Neither the staged upload nor anything at the object's key is left.
    assert _keys(lfs_world.settings) == set()
    answer = lfs_world.batch(
        "alice/secret", "download", [{"oid": oid, "size": len(content)}], ALICE
    )
    assert answer.json()["objects"][0]["error"]["code"] == 404


def test_verify_without_upload(lfs_world: LFSWorld) -> None:
    content = b"never sent"
    actions = _start_upload(lfs_world, content)
    assert _verify(lfs_world, actions, oid_of(content), len(content)).status_code == 404
    # The verify token is bound to the size announced in the batch.
    assert _verify(lfs_world, actions, oid_of(content), len(content) + 1).status_code == 422
