"""Google Drive specifics, against the local stand-in for Drive (see gdrive_standin.py)."""

from __future__ import annotations

import hashlib

from opencodehub.storage.gdrive import GoogleDriveStorage
from tests.storage.conftest import DriveFixture, MiB


def test_chunks_drive_only_partly_kept_are_sent_again(drive: DriveFixture) -> None:
    folder = drive.server.create_folder("partial")
    storage = GoogleDriveStorage(
        str(drive.credentials_file), folder, api_url=drive.server.base_url, chunk_size=1 * MiB
    )
    data = hashlib.sha256(b"seed").digest() * (3 * MiB // 32) + b"tail"
    drive.server.max_chunk_acceptance = 256 * 1024
    try:
        storage.put("lfs/partial", iter([data]))
    finally:
        drive.server.max_chunk_acceptance = None
        storage.close()
    storage = GoogleDriveStorage(str(drive.credentials_file), folder, api_url=drive.server.base_url)
    with storage.get("lfs/partial") as stream:
        assert stream.read() == data
    storage.close()


def test_one_file_per_key_in_the_folder(drive: DriveFixture) -> None:
    folder = drive.server.create_folder("single")
    storage = GoogleDriveStorage(str(drive.credentials_file), folder, api_url=drive.server.base_url)
    try:
        for version in (b"one", b"two", b"three"):
            storage.put("avatars/org/5", iter([version]))
        files = drive.server.live_files(folder)
        assert [item.name for item in files] == ["avatars/org/5"]
        assert files[0].size == 5
    finally:
        storage.close()
