"""Dispatch of queued jobs to runners: a Redis list per label set, or an in-process queue.

The queue only carries job ids as hints. The database decides: a runner takes a job by a
compare-and-set on its status (`service.claim_job`), so an id delivered twice (a re-enqueue
sweep, a Redis replay) runs once, and an id lost (Redis restarted) only waits for the sweep or
for a runner's poll to find it in the database.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from opencodehub.core.logging import get_logger

log = get_logger("opencodehub.actions.queue")

KEY_PREFIX = "och:actions:queue:"
LABEL_SETS_KEY = "och:actions:labelsets"
# Redis BLPOP waits at most this long per call, so label sets created meanwhile are picked up.
REDIS_POLL_SLICE = 1.0
# With no list for the runner's labels yet there is nothing to block on: look again this soon
# (a cheap SMEMBERS), so the first job of a new label set is not held for a whole slice.
REDIS_EMPTY_RECHECK = 0.05


def label_key(labels: Iterable[str]) -> str:
    return ",".join(sorted({label.strip().lower() for label in labels if label.strip()}))


def _key_labels(key: str) -> frozenset[str]:
    return frozenset(part for part in key.split(",") if part)


def runner_accepts(runner_labels: Iterable[str], job_labels: Iterable[str]) -> bool:
    """A runner takes a job when it has every label the job's `runs-on` names."""
    have = {label.strip().lower() for label in runner_labels}
    return _key_labels(label_key(job_labels)) <= have


class JobQueue(Protocol):
    def push(self, job_id: int, labels: Iterable[str]) -> None: ...

    async def pop(self, runner_labels: Iterable[str], timeout: float) -> int | None: ...

    def close(self) -> None: ...


class EmbeddedQueue:
    """For a single app process (the embedded default): FIFO across label sets."""

    # At most this many ids remembered as taken (see discard); past it they are forgotten,
    # and their entries cost a stale claim each, as before.
    MAX_TAKEN = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[int, int]]] = {}
        self._sequence = itertools.count()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._taken: set[int] = set()

    def push(self, job_id: int, labels: Iterable[str]) -> None:
        key = label_key(labels)
        with self._lock:
            self._taken.discard(job_id)  # queued again: its entries are hints again
            self._queues.setdefault(key, deque()).append((next(self._sequence), job_id))
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the waiter's loop closed
                continue

    def discard(self, job_id: int) -> None:
        """A runner took the job through the database (its poll looks there first): its id,
        still queued, is skipped when it comes up instead of costing a claim that finds the
        job taken. Pushing the id again undoes this."""
        with self._lock:
            if len(self._taken) >= self.MAX_TAKEN:
                self._taken.clear()
            self._taken.add(job_id)

    def _take(self, have: frozenset[str]) -> int | None:
        with self._lock:
            while True:
                best: deque[tuple[int, int]] | None = None
                for key, items in self._queues.items():
                    if items and _key_labels(key) <= have and (best is None or items[0] < best[0]):
                        best = items
                if best is None:
                    return None
                job_id = best.popleft()[1]
                if job_id in self._taken:
                    self._taken.discard(job_id)
                    continue
                return job_id

    async def pop(self, runner_labels: Iterable[str], timeout: float) -> int | None:
        have = frozenset(label.strip().lower() for label in runner_labels)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            event = asyncio.Event()
            waiter = (loop, event)
            with self._lock:
                self._waiters.add(waiter)
            try:
                job_id = self._take(have)
                if job_id is not None:
                    return job_id
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except TimeoutError:
                    return None
            finally:
                with self._lock:
                    self._waiters.discard(waiter)

    def pending(self) -> int:
        with self._lock:
            return sum(len(items) for items in self._queues.values())

    def clear(self) -> None:
        """Forget every queued id (what a restarted Redis does; tests use it)."""
        with self._lock:
            self._queues.clear()
            self._taken.clear()

    def close(self) -> None:
        self.clear()


class RedisQueue:
    """One Redis list per label set (`och:actions:queue:{labels}`), and a set naming them."""

    def __init__(self, url: str) -> None:
        import redis

        self._url = url
        self._redis = redis.Redis.from_url(url)
        self._async: dict[asyncio.AbstractEventLoop, Any] = {}
        self._lock = threading.Lock()

    def push(self, job_id: int, labels: Iterable[str]) -> None:
        key = label_key(labels)
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.sadd(LABEL_SETS_KEY, key)
                pipe.rpush(KEY_PREFIX + key, job_id)
                pipe.execute()
        except Exception:
            # The job stays queued in the database; the sweep pushes it again.
            log.exception("job could not be pushed to redis", job_id=job_id)

    def _client(self) -> Any:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = redis.asyncio.Redis.from_url(self._url)
                self._async[loop] = client
            return client

    async def pop(self, runner_labels: Iterable[str], timeout: float) -> int | None:
        have = frozenset(label.strip().lower() for label in runner_labels)
        client = self._client()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = min(remaining, REDIS_POLL_SLICE)
            try:
                raw_keys = await client.smembers(LABEL_SETS_KEY)
                keys = [
                    KEY_PREFIX + key
                    for key in (k.decode() if isinstance(k, bytes) else k for k in raw_keys)
                    if _key_labels(key) <= have
                ]
                if not keys:
                    await asyncio.sleep(min(wait, REDIS_EMPTY_RECHECK))
                    continue
                found = await client.blpop(keys, timeout=wait)
            except Exception:
                log.warning("redis queue unavailable; runners fall back to the database")
                await asyncio.sleep(wait)
                return None
            if found is not None:
                return int(found[1])

    def clear(self) -> None:
        for key in self._redis.smembers(LABEL_SETS_KEY):
            self._redis.delete(KEY_PREFIX + (key.decode() if isinstance(key, bytes) else key))
        self._redis.delete(LABEL_SETS_KEY)

    def close(self) -> None:
        self._redis.close()


_queues: dict[str, JobQueue] = {}
_queues_lock = threading.Lock()


def get_queue(redis_url: str) -> JobQueue:
    """The process's queue for a Redis URL ("" for the embedded one)."""
    with _queues_lock:
        queue = _queues.get(redis_url)
        if queue is None:
            queue = RedisQueue(redis_url) if redis_url else EmbeddedQueue()
            _queues[redis_url] = queue
        return queue
