"""An upload cut off midway over a real connection leaves nothing in storage."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.storage import build_storage, local_storage_root
from tests.conftest import LiveServer
from tests.git.gitutil import create_repo
from tests.lfs.conftest import MEDIA, basic, oid_of

pytestmark = pytest.mark.slow


def test_interrupted_proxied_upload(
    live_server: LiveServer,
    settings: Settings,
    db: Database,
    make_user: Callable[..., User],
) -> None:
    alice = make_user("alice")
    create_repo(db, settings, alice, "assets", auto_init=True)
    content = b"z" * 1_000_000
    oid = oid_of(content)
    answer = httpx.post(
        f"{live_server.url}/alice/assets.git/info/lfs/objects/batch",
        json={"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]},
        headers={"Authorization": basic("alice"), "Accept": MEDIA, "Content-Type": MEDIA},
        timeout=60,
    )
    put = answer.json()["objects"][0]["actions"]["upload"]
    target = urlsplit(put["href"])
    request = (
        f"PUT {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
        f"Authorization: {put['header']['Authorization']}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(content)}\r\n\r\n"
    ).encode()
    with socket.create_connection((target.hostname, target.port), timeout=10) as sock:
        sock.sendall(request + content[:300_000])
        time.sleep(0.3)  # the app is streaming the first part into storage
    storage = build_storage(settings)
    temp_dir = local_storage_root(settings) / ".och-tmp"
    deadline = time.monotonic() + 60  # a loaded machine may take a while to notice
    leftovers: list[object] = ["pending"]
    while time.monotonic() < deadline:
        leftovers = [info.key for info in storage.list("lfs/")]
        leftovers += list(temp_dir.iterdir()) if temp_dir.exists() else []
        if not leftovers:
            break
        time.sleep(0.1)
    assert leftovers == []
    # The object was never accepted.
    download = httpx.post(
        f"{live_server.url}/alice/assets.git/info/lfs/objects/batch",
        json={"operation": "download", "objects": [{"oid": oid, "size": len(content)}]},
        headers={"Accept": MEDIA, "Content-Type": MEDIA},
        timeout=60,
    )
    assert download.json()["objects"][0]["error"]["code"] == 404
