"""Direct-to-backend transfers (S3 on moto_server): clients PUT to a signed URL for a staging
key, and only `verify` — after checking size and SHA-256 — puts the object in place and links it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.lfs import service as lfs
from opencodehub.storage import build_storage
from tests.conftest import free_port
from tests.lfs.conftest import LFSWorld, basic, oid_of

ALICE = basic("alice")


@pytest.fixture
def settings(db: Database, data_dir: Path, moto_endpoint: str) -> Settings:
    """S3-backed settings (overrides tests.conftest's)."""
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=free_port(),
        ssh_port=free_port(),
        storage_backend="s3",
        storage_s3_endpoint=moto_endpoint,
        storage_s3_region="us-east-1",
        storage_s3_bucket=f"lfs-{uuid.uuid4().hex[:12]}",
        storage_s3_access_key="testing",
        storage_s3_secret_key="testing",
        storage_s3_path_style=True,
        _env_file=None,
    )


def _keys(settings: Settings) -> set[str]:
    return {info.key for info in build_storage(settings).list("lfs/")}


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
