"""The real `git lfs` client (Debian's git-lfs) against the live app over HTTP, with the local
backend (transfers proxied through the app) and the S3 backend on moto_server (transfers direct
to signed URLs, checked at verify)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.lfs.models import RepositoryLFSObject
from opencodehub.storage import build_storage
from tests.conftest import LiveServer, free_port
from tests.git.gitutil import commit, create_repo, repo_url, run_git
from tests.lfs.conftest import oid_of

pytestmark = pytest.mark.slow

# Clone with the LFS filters configured in the new repository (no global `git lfs install`).
LFS_CLONE = (
    "-c",
    "filter.lfs.process=git-lfs filter-process",
    "-c",
    "filter.lfs.smudge=git-lfs smudge -- %f",
    "-c",
    "filter.lfs.clean=git-lfs clean -- %f",
    "-c",
    "filter.lfs.required=true",
)


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, db: Database, data_dir: Path) -> Settings:
    """The app's settings, once per storage backend (overrides tests.conftest's)."""
    storage: dict[str, object] = {"storage_backend": request.param}
    if request.param == "s3":
        storage.update(
            storage_s3_endpoint=request.getfixturevalue("moto_endpoint"),
            storage_s3_region="us-east-1",
            storage_s3_bucket=f"lfs-{uuid.uuid4().hex[:12]}",
            storage_s3_access_key="testing",
            storage_s3_secret_key="testing",
            storage_s3_path_style=True,
        )
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=free_port(),
        ssh_port=free_port(),
        _env_file=None,
        **storage,
    )


def lfs_clone(url: str, target: Path, home: Path) -> None:
    run_git(*LFS_CLONE, "clone", "-q", url, str(target), cwd=target.parent, home=home)


def test_track_push_and_clone(
    live_server: LiveServer,
    settings: Settings,
    db: Database,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    repository = create_repo(db, settings, alice, "assets", private=True, auto_init=True)
    home = tmp_path / "home"
    url = repo_url(live_server.url, "alice", "assets", "alice")
    work = tmp_path / "work"
    run_git("clone", "-q", url, str(work), cwd=tmp_path, home=home)
    run_git("lfs", "install", "--local", cwd=work, home=home)
    run_git("lfs", "track", "*.bin", cwd=work, home=home)
    big = os.urandom(3 * 1024 * 1024 + 17)
    small = b"tiny\n"
    commit(work, home, {"data/big.bin": big, "small.bin": small, "notes.txt": "text"}, "lfs")
    pushed = run_git("push", "-q", "origin", "main", cwd=work, home=home)
    assert "error" not in pushed.stderr.lower(), pushed.stderr

    # The server's git holds pointers; storage holds the objects, linked to the repository.
    storage = build_storage(settings)
    keys = {info.key for info in storage.list("lfs/")}
    assert {f"lfs/{oid[0:2]}/{oid[2:4]}/{oid}" for oid in (oid_of(big), oid_of(small))} == keys
    with db.session() as session:
        linked = set(
            session.scalars(
                select(RepositoryLFSObject.oid).where(
                    RepositoryLFSObject.repository_id == repository.id
                )
            )
        )
    assert linked == {oid_of(big), oid_of(small)}

    clone = tmp_path / "clone"
    lfs_clone(url, clone, tmp_path / "home2")
    assert (clone / "data" / "big.bin").read_bytes() == big
    assert (clone / "small.bin").read_bytes() == small
    pointer = run_git("show", "HEAD:small.bin", cwd=clone, home=home).stdout
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1")

    # Without credentials the private repository's objects stay out of reach.
    anonymous = tmp_path / "anonymous"
    result = run_git(
        *LFS_CLONE,
        "clone",
        "-q",
        repo_url(live_server.url, "alice", "assets"),
        str(anonymous),
        cwd=tmp_path,
        home=tmp_path / "home3",
        check=False,
    )
    assert result.returncode != 0
