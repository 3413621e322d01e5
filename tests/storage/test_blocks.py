"""Cutting a stream into upload parts and sending them on a few threads (`storage.base`): exact
part sizes, one copy, and never more than `concurrency + 1` parts in memory."""

from __future__ import annotations

import io
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from opencodehub.storage.base import (
    drain_then,
    iter_blocks,
    iter_byte_blocks,
    upload_blocks_concurrently,
)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(
    ("total", "chunk", "block"),
    [(0, 7, 10), (1, 7, 10), (10, 3, 10), (95, 7, 10), (100, 10, 10), (100, 64, 10), (33, 1, 8)],
)
def test_iter_blocks_cuts_exact_blocks(total: int, chunk: int, block: int) -> None:
    data = bytes(index % 251 for index in range(total))
    blocks = list(iter_blocks(_chunks(data, chunk), block))
    assert b"".join(blocks) == data
    assert all(isinstance(part, bytearray) for part in blocks)
    assert all(len(part) == block for part in blocks[:-1])
    assert not blocks or 0 < len(blocks[-1]) <= block
    assert len(blocks) == -(-total // block)


def test_iter_blocks_reads_a_file_and_skips_empty_chunks() -> None:
    assert list(iter_blocks(iter([b"", b"abc", b"", b"de"]), 4)) == [b"abcd", b"e"]
    assert list(iter_blocks(io.BytesIO(b"0123456789"), 4)) == [b"0123", b"4567", b"89"]


def test_iter_blocks_hands_out_fresh_blocks() -> None:
    # A consumer keeps the blocks it was given (they are in flight): later blocks never
    # overwrite them.
    blocks = iter_blocks(_chunks(b"aaaabbbbcc", 3), 4)
    first = next(blocks)
    second = next(blocks)
    assert (first, second, next(blocks)) == (b"aaaa", b"bbbb", b"cc")
    assert first is not second


@pytest.mark.parametrize(
    ("total", "chunk", "block"),
    [(0, 7, 10), (1, 7, 10), (10, 3, 10), (95, 7, 10), (100, 10, 10), (100, 64, 10), (33, 1, 8)],
)
def test_iter_byte_blocks_cuts_exact_bytes_blocks(total: int, chunk: int, block: int) -> None:
    data = bytes(index % 251 for index in range(total))
    blocks = list(iter_byte_blocks(_chunks(data, chunk), block))
    assert b"".join(blocks) == data
    assert all(type(part) is bytes for part in blocks)
    assert all(len(part) == block for part in blocks[:-1])
    assert not blocks or 0 < len(blocks[-1]) <= block
    assert len(blocks) == -(-total // block)
    assert list(iter_byte_blocks(iter([b"", b"abc", b"", b"de"]), 4)) == [b"abcd", b"e"]
    assert list(iter_byte_blocks(io.BytesIO(b"0123456789"), 4)) == [b"0123", b"4567", b"89"]


def test_iter_byte_blocks_keeps_no_block_it_handed_out() -> None:
    """The generator keeps nothing of a block it handed out: a consumer that drops each block
    at once never has more than two blocks' worth alive (the one being joined and its pieces)
    and a chunk or two."""
    block_size = 4 * 1024 * 1024
    chunk = bytes(range(256)) * 4096  # 1 MiB
    source = (bytearray(chunk) for _ in range(64))  # 64 MiB of fresh chunks, 16 blocks
    tracemalloc.start()
    try:
        count = 0
        blocks = iter_byte_blocks(source, block_size)
        while (block := next(blocks, None)) is not None:
            count += 1
            del block
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 16
    assert peak < 2 * block_size + 2 * len(chunk), f"peak {peak / 1024 / 1024:.1f} MiB"


def test_iter_blocks_refuses_bytes_as_a_source() -> None:
    with pytest.raises(TypeError):
        list(iter_blocks(b"raw bytes", 4))  # type: ignore[arg-type]


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_upload_keeps_at_most_concurrency_plus_one_blocks(concurrency: int) -> None:
    """A block is read from the source only once a thread is free to send it."""
    lock = threading.Lock()
    pulled = 0
    finished = 0
    most_unfinished = 0

    def source() -> Iterator[bytearray]:
        nonlocal pulled, most_unfinished
        for index in range(20):
            with lock:
                # Blocks read and not yet sent, counting the one about to be handed out.
                pulled += 1
                most_unfinished = max(most_unfinished, pulled - finished)
            yield bytearray([index])

    def upload(index: int, block: bytearray) -> int:
        nonlocal finished
        time.sleep(0.005)
        with lock:
            finished += 1
        return block[0]

    results = upload_blocks_concurrently(source(), upload, concurrency)
    assert results == list(range(20))
    # The one handed out fills the slot that just came free: `concurrency` in all, plus at most
    # the part of the next block that the source is filling.
    assert most_unfinished <= concurrency


def test_upload_failure_stops_reading_and_is_raised() -> None:
    read: list[int] = []

    def source() -> Iterator[bytearray]:
        for index in range(100):
            read.append(index)
            yield bytearray([index])

    def upload(index: int, block: bytearray) -> None:
        if index == 3:
            raise ValueError("the backend refused part 3")
        time.sleep(0.002)

    with pytest.raises(ValueError, match="part 3"):
        upload_blocks_concurrently(source(), upload, 2)
    assert len(read) < 10


def test_upload_source_failure_is_raised() -> None:
    def source() -> Iterator[bytearray]:
        yield bytearray(b"a")
        raise OSError("the client went away")

    with pytest.raises(OSError, match="went away"):
        upload_blocks_concurrently(source(), lambda index, block: index, 3)


def test_drain_then_empties_the_head() -> None:
    head = [bytearray(b"a"), bytearray(b"b")]
    out = drain_then(head, iter([bytearray(b"c")]))
    assert next(out) == b"a"
    assert head == [bytearray(b"b")]
    assert list(out) == [b"b", b"c"]
    assert head == []
