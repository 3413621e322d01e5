"""Stored objects as HTTP response bodies, read from the backend ahead of the client.

Used wherever the app itself sends an object's bytes: LFS's proxied downloads and the signed
`/-/storage/` links (the local backend's own, and every backend's that cannot sign).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send

from opencodehub.storage.base import ObjectStream

# Bytes of a download read from the backend ahead of the client (plus one chunk).
READ_AHEAD_BYTES = 8 * 1024 * 1024
# Downloads of this process that may read that far ahead at once. The others read one chunk
# ahead, so a crowd of downloads holds about three chunks each (queued, being sent, being read).
MAX_DEEP_READ_AHEADS = 8
DEEP_READ_AHEADS = threading.BoundedSemaphore(MAX_DEEP_READ_AHEADS)


class ObjectResponse(StreamingResponse):
    """A stored object as the response body, read ahead of the client by a thread of its own.

    `StreamingResponse` over a blocking iterator reads a chunk in a worker thread, sends it, and
    only then reads the next: the backend's connection idles while the client's socket drains,
    and the other way round. Here one thread reads the backend's stream continuously, holding at
    most `read_ahead` bytes (and the chunk being read) the client has not taken, and hands each
    chunk to the event loop without a round trip through the thread pool (which cost as much CPU
    as the copying: on two cores shared with the backend and the client, that CPU is the
    throughput). Only `MAX_DEEP_READ_AHEADS` downloads at once read that far ahead; the others
    hold one chunk ahead. The stream is closed, releasing the backend's connection, by the reading
    thread, when the body ends, fails, or the client goes away.
    """

    def __init__(
        self,
        stream: ObjectStream,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str = "application/octet-stream",
        read_ahead: int = READ_AHEAD_BYTES,
    ) -> None:
        super().__init__(
            iter(()),
            status_code=status_code,
            media_type=media_type,
            headers={**(headers or {}), "Content-Length": str(stream.length)},
        )
        self.stream = stream
        self.read_ahead = read_ahead

    async def stream_response(self, send: Send) -> None:
        deep = DEEP_READ_AHEADS.acquire(blocking=False)
        try:
            # A budget of one byte: the thread reads a chunk, then waits until it is taken.
            reader = _ReadAhead(self.stream, self.read_ahead if deep else 1)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                while (chunk := await reader.next()) is not None:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                with anyio.CancelScope(shield=True):
                    await reader.stop()
        finally:
            if deep:
                DEEP_READ_AHEADS.release()


class _ReadAhead:
    """A thread reading an `ObjectStream` into a queue on the event loop, `budget` bytes ahead.

    The thread reads the next chunk only while the chunks the loop has not taken hold less than
    `budget` bytes. Errors travel through the queue and are raised by `next()`. `stop()` returns
    once the thread has closed the stream.
    """

    def __init__(self, stream: ObjectStream, budget: int) -> None:
        self._stream = stream
        self._budget = max(budget, 1)
        self._held = 0  # bytes read and not yet taken, guarded by `_room`
        self._stopping = False  # guarded by `_room`
        self._room = threading.Condition()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        threading.Thread(target=self._read, name="storage-read-ahead", daemon=True).start()

    def _hand_over(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _read(self) -> None:
        chunks = iter(self._stream)
        try:
            while True:
                with self._room:
                    while self._held >= self._budget and not self._stopping:
                        self._room.wait()
                    if self._stopping:
                        return
                chunk = next(chunks, None)
                if chunk is not None:
                    with self._room:
                        self._held += len(chunk)
                self._hand_over(self._queue.put_nowait, chunk)
                if chunk is None:
                    return
        except BaseException as exc:  # handed to the loop, which raises it
            self._hand_over(self._queue.put_nowait, exc)
        finally:
            try:
                chunks.close()  # type: ignore[attr-defined]
                self._stream.close()  # a generator never started has no `finally` to run
            finally:
                self._hand_over(self._set_finished)

    def _set_finished(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    async def next(self) -> bytes | None:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            with self._room:
                self._held -= len(item)
                self._room.notify()
        return item

    async def stop(self) -> None:
        with self._room:
            self._stopping = True
            self._room.notify()
        await self._finished
