"""Giving the heap's freed pages back to the kernel while a large git transfer runs.

Why a transfer needs this. glibc keeps memory that the program frees inside its heaps, on free
lists, for the next allocations; `malloc_trim` (called every 30 s by `serve.py`) hands the pages
of those free chunks back to the kernel but leaves the chunks on the lists. After a burst (the
load of a 100,000-commit repository: its commit index, the listings, the git child processes'
pipes) a server's heap is mostly such free, handed-back chunks, spread over its whole length.

A push or a clone then moves hundreds of MB through short-lived buffers of many sizes: each
socket read (up to 256 KiB, shrunk to what arrived), uvicorn's request-body concatenation, the
SSH layer's input buffer (re-sliced after every 32 KiB packet) and decrypted packets, git's pipe
reads. glibc serves each from whichever free chunk fits best, wherever it lies; the first use of
a handed-back page faults it in again, and freeing the buffer does not give it back. Over a 1 GB
push the buffers visit most of the free chunks, so the process grew back by 45-67 MB to about
the size the burst had left, until the next periodic trim: the transfer's live memory was only
a few MB all along. A fixed mmap threshold (so that large buffers get pages of their own) did
not help, since many of these buffers are smaller than any sensible threshold.

So every `TRIM_EVERY_BYTES` that a transfer moves, the heap is trimmed again, off the event
loop and never twice at once in a process: what a transfer can fault in between two trims is
bounded by what it moves in between, not by the size of the heap the last burst left. A trim
walks every free chunk of the heap, so its cost grows with the fragmentation the burst left; it
is kept to a share of the time (`MAX_TRIM_SHARE`). The 1 GB push figures, before and after, are
in benchmarks/README.md ("1 GB push memory after the load").
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
import time
from collections.abc import Callable
from functools import cache

from opencodehub.core.logging import get_logger

log = get_logger("opencodehub.git.heap")

# Bytes a transfer moves (in either direction) between two trims. Measured after the load of a
# 100,000-commit repository, 16 MiB let the heap grow back by up to 20 MB over HTTP and 45 MB
# over SSH between two trims (asyncssh copies what is left of its input buffer after every
# packet, so each byte received passes through several buffers of the heap).
TRIM_EVERY_BYTES = 4 * 1024 * 1024
# At most this share of the wall time goes to trimming: a trim holds the arena's lock, which the
# event loop's own allocations wait for, and on a fragmented heap it is not cheap.
MAX_TRIM_SHARE = 0.25


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where there is none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """Runs `malloc_trim` in a worker thread on request, at most one at a time per process and
    at most `max_share` of the time (a request that comes too soon after a trim is ignored)."""

    def __init__(
        self, trim: Callable[[], object] | None = None, max_share: float = MAX_TRIM_SHARE
    ) -> None:
        self._trim = trim
        self._max_share = max_share
        self._running = False
        self._not_before = 0.0  # monotonic time before which requests are ignored
        self.trims = 0  # trims started, for tests and diagnostics
        self.seconds = 0.0  # time spent trimming

    def _run(self) -> None:
        trim = self._trim
        if trim is None:
            malloc_trim = _malloc_trim()
            if malloc_trim is None:
                return
            trim = lambda: malloc_trim(0)  # noqa: E731
        started = time.monotonic()
        try:
            trim()
        finally:
            finished = time.monotonic()
            self.seconds += finished - started
            # A trim holds the arena's lock, which the event loop's own allocations wait for:
            # the pause after it keeps trimming under `max_share` of the time.
            self._not_before = finished + (finished - started) * (1 / self._max_share - 1)

    def request(self) -> None:
        """Start a trim unless one is running; call from the event loop."""
        if self._running or time.monotonic() < self._not_before:
            return
        self._running = True
        self.trims += 1
        future = asyncio.get_running_loop().run_in_executor(None, self._run)
        future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[None]) -> None:
        self._running = False
        if not future.cancelled() and future.exception() is not None:
            log.warning("trimming the heap failed", error=repr(future.exception()))


# The process's one trimmer, shared by every transfer of both transports.
HEAP_TRIMMER = HeapTrimmer()


class TransferMeter:
    """Counts the bytes one transfer moves and asks for a trim every `every` bytes."""

    def __init__(self, trimmer: HeapTrimmer | None = None, every: int | None = None) -> None:
        # Module attributes are read here, not bound at import, so tests can swap them.
        self._trimmer = trimmer if trimmer is not None else HEAP_TRIMMER
        self._every = every if every is not None else TRIM_EVERY_BYTES
        self._since_trim = 0

    def moved(self, size: int) -> None:
        self._since_trim += size
        if self._since_trim >= self._every:
            # The remainder carries over: a large chunk must not swallow the next interval.
            self._since_trim %= self._every
            self._trimmer.request()
