"""Shared helpers for the LFS tests: two users, their repositories, LFS requests, and settings
for an S3 backend (moto_server)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos.models import Repository
from opencodehub.storage import build_storage
from tests.conftest import PASSWORD, free_port
from tests.git.gitutil import create_repo
from tests.storage.conftest import moto_endpoint  # noqa: F401 - a fixture for the S3 tests

MEDIA = "application/vnd.git-lfs+json"


def basic(username: str, secret: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


def oid_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class LFSWorld:
    client: TestClient
    settings: Settings
    db: Database
    alice: User
    bob: User
    public: Repository  # alice/hello
    private: Repository  # alice/secret
    bobs: Repository  # bob/mine, private

    def post(self, path: str, body: Any, auth: str | None = None, **headers: str) -> httpx.Response:
        sent = {"Accept": MEDIA, "Content-Type": MEDIA, **headers}
        if auth:
            sent["Authorization"] = auth
        return self.client.post(path, json=body, headers=sent)

    def batch(
        self,
        repo: str,
        operation: str,
        objects: list[dict[str, Any]],
        auth: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = {"operation": operation, "transfers": ["basic"], "objects": objects, **extra}
        return self.post(f"/{repo}.git/info/lfs/objects/batch", body, auth)

    def upload(self, repo: str, content: bytes, auth: str) -> str:
        """Push one object the way git-lfs does (batch, PUT, verify); returns its oid."""
        oid = oid_of(content)
        answer = self.batch(repo, "upload", [{"oid": oid, "size": len(content)}], auth)
        assert answer.status_code == 200, answer.text
        actions = answer.json()["objects"][0].get("actions")
        if actions is None:
            return oid  # already there
        put = actions["upload"]
        response = self.client.put(put["href"], content=content, headers=put.get("header", {}))
        assert response.status_code == 200, response.text
        check = actions["verify"]
        verified = self.post(check["href"], {"oid": oid, "size": len(content)}, **check["header"])
        assert verified.status_code == 200, verified.text
        return oid

    def download(self, repo: str, oid: str, size: int, auth: str | None) -> httpx.Response:
        answer = self.batch(repo, "download", [{"oid": oid, "size": size}], auth)
        assert answer.status_code == 200, answer.text
        obj = answer.json()["objects"][0]
        assert "error" not in obj, obj
        action = obj["actions"]["download"]
        return self.client.get(action["href"], headers=action.get("header", {}))


@pytest.fixture
def lfs_world(
    client: TestClient, settings: Settings, db: Database, make_user: Callable[..., User]
) -> LFSWorld:
    alice = make_user("alice")
    bob = make_user("bob")
    public = create_repo(db, settings, alice, "hello", auto_init=True)
    private = create_repo(db, settings, alice, "secret", private=True, auto_init=True)
    bobs = create_repo(db, settings, bob, "mine", private=True, auto_init=True)
    return LFSWorld(client, settings, db, alice, bob, public, private, bobs)


class S3SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


@pytest.fixture
def s3_settings(request: pytest.FixtureRequest, db: Database, data_dir: Path) -> S3SettingsFactory:
    """Settings for S3 storage on moto_server, in a bucket of the test's own, with `overrides`
    on top. A test module overrides tests.conftest's `settings` fixture with one of these."""
    endpoint = request.getfixturevalue("moto_endpoint")

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": db.url,
            "secret_key": "test-secret-key-0123456789abcdef",
            "ssh_enabled": False,
            "http_port": free_port(),
            "ssh_port": free_port(),
            "storage_backend": "s3",
            "storage_s3_endpoint": endpoint,
            "storage_s3_region": "us-east-1",
            "storage_s3_bucket": f"lfs-{uuid.uuid4().hex[:12]}",
            "storage_s3_access_key": "testing",
            "storage_s3_secret_key": "testing",
            "storage_s3_path_style": True,
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return make


def stored_lfs_keys(settings: Settings) -> set[str]:
    """Every key under `lfs/` in the storage the settings describe."""
    storage = build_storage(settings)
    try:
        return {info.key for info in storage.list("lfs/")}
    finally:
        storage.close()
