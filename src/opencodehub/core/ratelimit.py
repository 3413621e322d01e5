"""Fixed-window counters for API rate limits and login throttling.

In Redis when one is configured, so every app node shares the count; in process memory otherwise
(the embedded single-process default).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Window:
    allowed: bool
    limit: int
    used: int
    reset_at: int  # epoch seconds when the window ends

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class RateLimiter(Protocol):
    # True when `hit` does no I/O, so async code may call it without a worker thread.
    in_process: bool

    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> Window: ...

    def peek(self, key: str, limit: int, window_seconds: int) -> Window: ...

    def reset(self, key: str) -> None: ...


def _window_bounds(window_seconds: int, now: float) -> tuple[int, int]:
    start = int(now // window_seconds) * window_seconds
    return start, start + window_seconds


class MemoryRateLimiter:
    in_process = True
    _PRUNE_EVERY = 10_000

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._hits = 0

    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> Window:
        start, end = _window_bounds(window_seconds, time.time())
        with self._lock:
            self._hits += 1
            if self._hits % self._PRUNE_EVERY == 0:
                self._prune()
            used = self._counts.get((key, start), 0) + cost
            self._counts[(key, start)] = used
        return Window(allowed=used <= limit, limit=limit, used=used, reset_at=end)

    def peek(self, key: str, limit: int, window_seconds: int) -> Window:
        start, end = _window_bounds(window_seconds, time.time())
        used = self._counts.get((key, start), 0)
        return Window(allowed=used < limit, limit=limit, used=used, reset_at=end)

    def reset(self, key: str) -> None:
        with self._lock:
            for bucket in [bucket for bucket in self._counts if bucket[0] == key]:
                del self._counts[bucket]

    def _prune(self) -> None:
        # Windows are at most a day long; anything older than that is dead weight.
        horizon = time.time() - 86_400
        for bucket in [bucket for bucket in self._counts if bucket[1] < horizon]:
            del self._counts[bucket]


class RedisRateLimiter:
    in_process = False

    def __init__(self, url: str, prefix: str = "och:rl:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix

    def _key(self, key: str, start: int) -> str:
        return f"{self._prefix}{key}:{start}"

    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> Window:
        start, end = _window_bounds(window_seconds, time.time())
        redis_key = self._key(key, start)
        pipe = self._redis.pipeline()
        pipe.incrby(redis_key, cost)
        pipe.expire(redis_key, math.ceil(window_seconds) + 5)
        used, _ = pipe.execute()
        return Window(allowed=int(used) <= limit, limit=limit, used=int(used), reset_at=end)

    def peek(self, key: str, limit: int, window_seconds: int) -> Window:
        start, end = _window_bounds(window_seconds, time.time())
        used = int(self._redis.get(self._key(key, start)) or 0)
        return Window(allowed=used < limit, limit=limit, used=used, reset_at=end)

    def reset(self, key: str) -> None:
        for redis_key in self._redis.scan_iter(f"{self._prefix}{key}:*"):
            self._redis.delete(redis_key)


def build_rate_limiter(redis_url: str) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()
