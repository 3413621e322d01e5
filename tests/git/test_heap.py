"""Heap trimming during git transfers (`git/heap.py`): when it is asked for and how it runs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from opencodehub.git import heap
from tests.conftest import wait_for
from tests.git.gitutil import CountingTrimmer


def test_meter_asks_for_a_trim_every_so_many_bytes() -> None:
    trimmer = CountingTrimmer()
    meter = heap.TransferMeter(trimmer, every=1000)
    meter.moved(999)
    assert trimmer.requests == 0
    meter.moved(1)
    assert trimmer.requests == 1
    for _ in range(25):
        meter.moved(100)  # 2,500 more bytes: two more thresholds crossed
    assert trimmer.requests == 3


def test_meter_defaults_to_the_shared_trimmer_and_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trimmer = CountingTrimmer()
    monkeypatch.setattr(heap, "HEAP_TRIMMER", trimmer)
    monkeypatch.setattr(heap, "TRIM_EVERY_BYTES", 64)
    meter = heap.TransferMeter()
    meter.moved(64 * 10)
    assert trimmer.requests == 1  # one large chunk is one request, not ten
    meter.moved(64)
    assert trimmer.requests == 2


def test_trimmer_runs_off_the_loop_and_one_trim_at_a_time() -> None:
    release = threading.Event()
    threads: list[int] = []

    def blocking_trim() -> None:
        threads.append(threading.get_ident())
        release.wait(10)

    trimmer = heap.HeapTrimmer(trim=blocking_trim, max_share=1.0)

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        trimmer.request()
        trimmer.request()  # the first one is still running: ignored
        await asyncio.to_thread(wait_for, lambda: len(threads) == 1, poll=0.005)
        assert trimmer.trims == 1
        assert threads == [threads[0]] and threads[0] != loop_thread
        release.set()
        deadline = time.monotonic() + 10
        while trimmer._running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        trimmer.request()  # the first one is done: a new one starts
        await asyncio.to_thread(wait_for, lambda: len(threads) == 2, poll=0.005)
        assert trimmer.trims == 2

    asyncio.run(scenario())


def test_default_trim_calls_malloc_trim() -> None:
    assert heap._malloc_trim() is not None
    trimmer = heap.HeapTrimmer()

    async def scenario() -> None:
        trimmer.request()
        deadline = time.monotonic() + 10
        while trimmer._running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)

    asyncio.run(scenario())
    assert trimmer.trims == 1
    assert trimmer.seconds > 0


def test_trimmer_keeps_trimming_under_its_share_of_the_time() -> None:
    """After a trim that took d seconds, requests are ignored for d * (1 / share - 1) seconds."""
    trimmer = heap.HeapTrimmer(trim=lambda: time.sleep(0.05), max_share=0.05)

    async def finish() -> None:
        deadline = time.monotonic() + 10
        while trimmer._running:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)

    async def scenario() -> None:
        trimmer.request()
        await finish()
        assert trimmer.trims == 1
        trimmer.request()  # within 0.05 * 19 = 0.95 s of the trim: ignored
        assert trimmer.trims == 1
        assert not trimmer._running
        trimmer._not_before = 0.0  # the pause is over
        trimmer.request()
        await finish()
        assert trimmer.trims == 2

    asyncio.run(scenario())
