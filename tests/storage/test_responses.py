"""`ObjectResponse`, a stored object as a response body (LFS's proxied downloads, the signed
`/-/storage/` links): chunks are read from the backend, a bounded number ahead, while the client
takes them, and the backend's stream is closed however the response ends. Driven as a bare ASGI
app, with events instead of sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from opencodehub.storage import ObjectInfo, ObjectStream, StorageError, responses
from opencodehub.storage.responses import ObjectResponse

CHUNKS = [bytes([index]) * 1000 for index in range(5)]
WAIT = 10.0  # seconds before a missing event fails the test instead of hanging it


class Backend:
    """Chunks of a stored object, recording which reads started and whether it was closed."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.started: list[threading.Event] = [threading.Event() for _ in CHUNKS]
        self.closed = threading.Event()
        self.fail_at = fail_at

    def chunks(self) -> Iterator[bytes]:
        for index, chunk in enumerate(CHUNKS):
            self.started[index].set()
            if index == self.fail_at:
                raise StorageError("the backend's connection dropped")
            yield chunk

    def stream(self) -> ObjectStream:
        size = sum(len(chunk) for chunk in CHUNKS)
        info = ObjectInfo(key="lfs/aa/bb/x", size=size, etag="e")
        return ObjectStream(self.chunks(), info, on_close=self.closed.set)


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}}


async def _never_disconnects() -> dict[str, Any]:
    await anyio.sleep_forever()
    raise AssertionError


async def _started(event: threading.Event) -> bool:
    return await anyio.to_thread.run_sync(event.wait, WAIT)


def _download_checking_reads(*, one_ahead_only: bool) -> None:
    """Send the whole object, checking at each chunk sent that the next one is being read and,
    with `one_ahead_only`, that none after it is until it is taken."""
    backend = Backend()
    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body" or not message["more_body"]:
            return
        index = len(bodies)
        bodies.append(message["body"])
        if index + 1 < len(CHUNKS):
            # The client is still taking chunk `index`: the read of the next one has begun.
            assert await _started(backend.started[index + 1]), f"chunk {index + 1} not read"
        if one_ahead_only and index + 2 < len(CHUNKS):
            # Chunk index + 1 waits in the queue: nothing further is read until it is taken.
            assert not backend.started[index + 2].is_set()

    _respond(backend.stream(), send)
    assert bodies == CHUNKS
    assert backend.closed.is_set()


def _respond(stream: ObjectStream, send: Any, **options: Any) -> None:
    async def main() -> None:
        await ObjectResponse(stream, **options)(_scope(), _never_disconnects, send)

    anyio.run(main)


def test_the_next_chunk_is_read_while_one_is_sent() -> None:
    _download_checking_reads(one_ahead_only=False)


def test_a_client_that_leaves_closes_the_backend_stream() -> None:
    backend = Backend()
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if sent:
                raise OSError("the client went away")
            sent.append(message["body"])

    with pytest.raises(Exception):  # noqa: B017 - Starlette's ClientDisconnect or the OSError
        _respond(backend.stream(), send, read_ahead=2 * len(CHUNKS[0]))
    assert sent == CHUNKS[:1]
    assert backend.closed.is_set()
    # Two chunks' bytes held beyond the one taken (chunks 1 and 2), none read after it left.
    assert not backend.started[3].is_set()


def test_a_client_that_leaves_before_the_first_read_closes_the_stream() -> None:
    closed = threading.Event()
    info = ObjectInfo(key="lfs/aa/bb/x", size=1, etag="e")
    stream = ObjectStream(iter([b"x"]), info, on_close=closed.set)

    async def send(message: dict[str, Any]) -> None:
        raise OSError("the client went away")

    with pytest.raises(Exception):  # noqa: B017 - Starlette's ClientDisconnect or the OSError
        _respond(stream, send)
    assert closed.is_set()


def test_a_backend_error_mid_body_closes_the_stream() -> None:
    backend = Backend(fail_at=2)
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["more_body"]:
            sent.append(message["body"])

    with pytest.raises(StorageError, match="dropped"):
        _respond(backend.stream(), send)
    assert sent == CHUNKS[:2]
    assert backend.closed.is_set()


def test_past_the_deep_read_aheads_a_download_reads_one_chunk_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(responses, "DEEP_READ_AHEADS", threading.BoundedSemaphore(1))
    assert responses.DEEP_READ_AHEADS.acquire(blocking=False)  # another download holds it
    _download_checking_reads(one_ahead_only=True)


async def _client_takes_all(message: dict[str, Any]) -> None:
    pass


def test_a_deep_read_ahead_is_given_back_when_the_download_ends() -> None:
    for _ in range(20):  # more downloads than there are deep read-aheads
        _respond(Backend().stream(), _client_takes_all)
    taken = [
        responses.DEEP_READ_AHEADS.acquire(blocking=False)
        for _ in range(responses.MAX_DEEP_READ_AHEADS)
    ]
    try:
        assert all(taken)
    finally:
        for _ in taken:
            responses.DEEP_READ_AHEADS.release()


def test_a_reader_that_cannot_start_gives_its_deep_read_ahead_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cannot_start(*args: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(responses, "DEEP_READ_AHEADS", threading.BoundedSemaphore(1))
    monkeypatch.setattr(responses, "_ReadAhead", cannot_start)

    with pytest.raises(RuntimeError, match="new thread"):
        _respond(Backend().stream(), _client_takes_all)
    assert responses.DEEP_READ_AHEADS.acquire(blocking=False)
