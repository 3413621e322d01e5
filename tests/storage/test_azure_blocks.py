"""The Azure adapter's block uploads stay inside their memory budget (`upload_buffer`), with no
Azurite: the SDK's blob client is replaced by a recorder."""

from __future__ import annotations

import hashlib
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from opencodehub.storage.azure import (
    DEFAULT_UPLOAD_BUFFER,
    MIN_BLOCK_SIZE,
    AzureBlobStorage,
    bounded_blocks,
)
from opencodehub.storage.base import DEFAULT_CHUNK_SIZE

MiB = 1024 * 1024
# Azurite's documented development account; nothing listens on the port.
CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)


class RecordingBlob:
    """Stands in for the SDK's BlobClient: keeps each staged block's length and digest (not
    its bytes), and how many `stage_block` calls ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.staged: dict[str, tuple[int, bytes]] = {}
        self.running = 0
        self.most_running = 0
        self.committed: list[str] = []
        self.single: bytes | None = None

    def stage_block(self, block_id: str, data: bytes, length: int) -> None:
        assert type(data) is bytes and len(data) == length
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            digest = hashlib.sha256(data).digest()
        finally:
            with self.lock:
                self.running -= 1
        self.staged[block_id] = (length, digest)

    def commit_block_list(self, blocks: list[Any], **_: Any) -> None:
        self.committed = [block.id for block in blocks]

    def upload_blob(self, data: bytes, **_: Any) -> None:
        self.single = data

    def get_blob_properties(self) -> Any:
        size = sum(self.staged[block_id][0] for block_id in self.committed)
        return SimpleNamespace(
            size=size if self.committed else len(self.single or b""),
            etag='"0x1"',
            content_settings=None,
            last_modified=datetime.now(UTC),
        )


def _adapter(monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[Any, RecordingBlob]:
    storage = AzureBlobStorage(CONNECTION, "c", create_container=False, **options)
    blob = RecordingBlob()
    monkeypatch.setattr(storage._container, "get_blob_client", lambda key: blob)
    return storage, blob


def _source(total: int, chunk: int = MiB) -> Iterator[bytes]:
    pattern = bytes(range(256)) * (chunk // 256)
    sent = 0
    while sent < total:
        piece = pattern[: min(chunk, total - sent)]
        sent += len(piece)
        yield bytearray(piece)  # a fresh object each time, as a request body's pieces are


@pytest.mark.parametrize(
    ("asked", "threads", "budget", "expected"),
    [
        (DEFAULT_CHUNK_SIZE, 4, DEFAULT_UPLOAD_BUFFER, (4 * MiB, 4)),  # the settings' defaults
        (2 * MiB, 2, DEFAULT_UPLOAD_BUFFER, (2 * MiB, 2)),  # already inside: unchanged
        (64 * MiB, 1, DEFAULT_UPLOAD_BUFFER, (8 * MiB, 1)),
        (8 * MiB, 30, DEFAULT_UPLOAD_BUFFER, (MIN_BLOCK_SIZE, 22)),  # 1 MiB floor, fewer threads
        (256 * 1024, 4, DEFAULT_UPLOAD_BUFFER, (256 * 1024, 4)),  # a small block stays small
        (8 * MiB, 4, 2 * MiB, (MIN_BLOCK_SIZE, 1)),  # budget too small: one thread
    ],
)
def test_block_size_and_threads_fit_the_budget(
    asked: int, threads: int, budget: int, expected: tuple[int, int]
) -> None:
    block, concurrency = bounded_blocks(asked, threads, budget)
    assert (block, concurrency) == expected
    if block >= MIN_BLOCK_SIZE and budget >= 3 * MIN_BLOCK_SIZE:
        assert (concurrency + 2) * block <= budget


def test_default_settings_stage_4_mib_blocks_on_4_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    storage, blob = _adapter(monkeypatch, block_size=DEFAULT_CHUNK_SIZE, concurrency=4)
    total = 21 * MiB + 5
    info = storage.put("lfs/aa/bb/x", _source(total), size=total)
    lengths = [blob.staged[block_id][0] for block_id in blob.committed]
    assert lengths == [4 * MiB] * 5 + [MiB + 5]
    assert info.size == total
    assert blob.most_running <= 4


@pytest.mark.parametrize("budget", [6 * MiB, 12 * MiB])
def test_an_upload_never_holds_more_than_its_budget(
    monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Python-level allocations during a 96 MiB upload stay within the budget plus a few of the
    source's 1 MiB chunks (the one read, its `bytes` copy, one that straddles two blocks): no
    block is read early, kept after it was sent, or copied twice."""
    storage, blob = _adapter(
        monkeypatch, block_size=DEFAULT_CHUNK_SIZE, concurrency=8, upload_buffer=budget
    )
    total = 96 * MiB
    tracemalloc.start()
    try:
        storage.put("lfs/aa/bb/y", _source(total), size=total)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(blob.staged[block_id][0] for block_id in blob.committed) == total
    assert peak < budget + 3 * MiB, f"peak {peak / MiB:.1f} MiB"
