"""Git LFS on an SSH remote: `git lfs` calls `git-lfs-authenticate` over SSH and uses the token it
gets on the HTTP API. The SSH server runs as in tests/git/test_ssh.py, the app as live_server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.git.ssh_commands import INVALID_LFS_COMMAND
from tests.conftest import LiveServer
from tests.git.gitutil import commit, create_repo, run_git
from tests.git.test_ssh import SSHClient, SSHServer, add_user_key, make_client, ssh_server
from tests.lfs.conftest import MEDIA
from tests.lfs.test_git_lfs import LFS_CLONE

pytestmark = pytest.mark.slow

__all__ = ["make_client", "ssh_server"]  # fixtures used by the tests below


def test_push_and_clone_over_ssh(
    live_server: LiveServer,
    ssh_server: SSHServer,
    settings: Settings,
    db: Database,
    make_user: Callable[..., User],
    make_client: Callable[..., SSHClient],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    client = make_client("alice")
    add_user_key(db, alice, client)
    create_repo(db, settings, alice, "media", private=True, auto_init=True)
    url = client.url("alice", "media")
    work = tmp_path / "work"
    client.git("clone", "-q", url, str(work), cwd=tmp_path)
    client.git("lfs", "install", "--local", cwd=work)
    client.git("lfs", "track", "*.bin", cwd=work)
    content = os.urandom(512 * 1024)
    commit(work, client.home, {"video.bin": content}, "lfs over ssh")
    client.git("push", "-q", "origin", "main", cwd=work)

    clone = tmp_path / "clone"
    client.git(*LFS_CLONE, "clone", "-q", url, str(clone), cwd=tmp_path)
    assert (clone / "video.bin").read_bytes() == content
    pointer = run_git("show", "HEAD:video.bin", cwd=clone, home=client.home).stdout
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1")


def test_git_lfs_authenticate(
    live_server: LiveServer,
    ssh_server: SSHServer,
    settings: Settings,
    db: Database,
    make_user: Callable[..., User],
    make_client: Callable[..., SSHClient],
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    alice_client = make_client("alice")
    bob_client = make_client("bob")
    add_user_key(db, alice, alice_client)
    add_user_key(db, bob, bob_client)
    create_repo(db, settings, alice, "secret", private=True, auto_init=True)
    create_repo(db, settings, alice, "open", auto_init=True)

    answer = alice_client.ssh("git-lfs-authenticate", "alice/secret.git", "upload")
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["href"] == f"{live_server.url}/alice/secret.git/info/lfs"
    assert body["expires_in"] > 0
    assert body["header"]["Authorization"].startswith("RemoteAuth ")
    batch = httpx.post(
        body["href"] + "/objects/batch",
        json={"operation": "upload", "objects": [{"oid": "b" * 64, "size": 2}]},
        headers={**body["header"], "Accept": MEDIA, "Content-Type": MEDIA},
    )
    assert batch.status_code == 200, batch.text
    assert set(batch.json()["objects"][0]["actions"]) == {"upload", "verify"}

    # Bob may not see alice's private repository, nor write her public one.
    hidden = bob_client.ssh("git-lfs-authenticate", "alice/secret", "download")
    assert hidden.returncode != 0
    assert b"Repository not found" in hidden.stderr
    denied = bob_client.ssh("git-lfs-authenticate", "alice/open", "upload")
    assert denied.returncode != 0
    assert b"denied to bob" in denied.stderr
    assert bob_client.ssh("git-lfs-authenticate", "alice/open", "download").returncode == 0

    for bad in (
        ["git-lfs-authenticate", "alice/open"],
        ["git-lfs-authenticate", "alice/open", "delete"],
        ["git-lfs-authenticate", "alice/../open", "download"],
        ["git-lfs-authenticate", "alice/open", "download", "extra"],
        ["git-lfs-authenticate", "'alice/open;id'", "download"],
    ):
        refused = alice_client.ssh(*bad)
        assert refused.returncode != 0
        assert INVALID_LFS_COMMAND.encode() in refused.stderr
