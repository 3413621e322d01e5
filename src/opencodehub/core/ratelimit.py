"""Rate limit counters: fixed windows for the REST API, sliding windows for throttling guesses.

Fixed windows are aligned to multiples of their length, which is what the API's
`X-RateLimit-Reset` promises. Around a boundary they let twice the limit through in moments (the
limit at the end of one window, again at the start of the next): harmless for an hourly API
quota, not for counting guesses. Throttling (failed passwords and two-factor codes) therefore
keeps a sliding log per key, the times of its latest `limit + 1` hits: "at most `limit` in any
`window_seconds`" then holds exactly, and the log stays that short however hard a key is hit.

In Redis when one is configured, so every app node shares the count; in process memory otherwise
(the embedded single-process default).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
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


@dataclass(frozen=True)
class SlidingWindow:
    allowed: bool
    limit: int
    used: int  # hits in the last `window_seconds`, counted up to `limit + 1` (the log's length)
    retry_after: int  # whole seconds until one more would be allowed; 0 when it already is


class RateLimiter(Protocol):
    # True when `hit` does no I/O, so async code may call it without a worker thread.
    in_process: bool

    def hit(self, key: str, limit: int, window_seconds: int, cost: int = 1) -> Window: ...

    def peek(self, key: str, limit: int, window_seconds: int) -> Window: ...

    def hit_sliding(self, key: str, limit: int, window_seconds: int) -> SlidingWindow: ...

    def peek_sliding(self, key: str, limit: int, window_seconds: int) -> SlidingWindow: ...

    def reset_sliding(self, key: str) -> None: ...


def _window_bounds(window_seconds: int, now: float) -> tuple[int, int]:
    start = int(now // window_seconds) * window_seconds
    return start, start + window_seconds


def _now_ms() -> int:
    # Whole milliseconds, so that the moment `retry_after` names compares exactly.
    return round(time.time() * 1000)


def _sliding_window(
    log: Iterable[int], limit: int, window_seconds: int, now_ms: int, *, after_hit: bool
) -> SlidingWindow:
    """The window over a key's log of hit times (epoch milliseconds). `after_hit`: the log
    includes a hit just made, and `allowed` says whether it fitted (as `hit` does); otherwise it
    says whether one more would fit (as `peek` does)."""
    window_ms = window_seconds * 1000
    recent = sorted((at for at in log if at > now_ms - window_ms), reverse=True)
    used = len(recent)
    if used < limit:
        wait_ms = 0
    elif limit < 1:
        wait_ms = window_ms  # nothing is ever admitted: there is no honest answer, say a window
    else:
        wait_ms = recent[limit - 1] + window_ms - now_ms  # when the limit-th latest slides out
    return SlidingWindow(
        allowed=used <= limit if after_hit else used < limit,
        limit=limit,
        used=used,
        retry_after=-(-wait_ms // 1000),
    )


@dataclass(slots=True)
class _SlidingLog:
    window_seconds: int
    times: deque[int]  # epoch milliseconds, the latest `limit + 1` hits


class MemoryRateLimiter:
    in_process = True
    _PRUNE_EVERY = 10_000

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._sliding: dict[str, _SlidingLog] = {}
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

    def hit_sliding(self, key: str, limit: int, window_seconds: int) -> SlidingWindow:
        now_ms = _now_ms()
        with self._lock:
            self._hits += 1
            if self._hits % self._PRUNE_EVERY == 0:
                self._prune()
            log = self._sliding.get(key)
            if log is None or log.times.maxlen != limit + 1:
                # A new key, or a new limit (settings changed): keep the latest that fit.
                log = self._sliding[key] = _SlidingLog(
                    window_seconds, deque(log.times if log else (), maxlen=limit + 1)
                )
            log.window_seconds = window_seconds
            log.times.append(now_ms)
            times = list(log.times)
        return _sliding_window(times, limit, window_seconds, now_ms, after_hit=True)

    def peek_sliding(self, key: str, limit: int, window_seconds: int) -> SlidingWindow:
        now_ms = _now_ms()
        with self._lock:
            log = self._sliding.get(key)
            times = list(log.times) if log is not None else []
        return _sliding_window(times, limit, window_seconds, now_ms, after_hit=False)

    def reset_sliding(self, key: str) -> None:
        with self._lock:
            self._sliding.pop(key, None)

    def _prune(self) -> None:
        now = time.time()
        # Fixed windows are at most a day long; anything older than that is dead weight.
        horizon = now - 86_400
        for bucket in [bucket for bucket in self._counts if bucket[1] < horizon]:
            del self._counts[bucket]
        # A log is dead weight once its latest hit has slid out of the window.
        now_ms = now * 1000
        for key in [
            key
            for key, log in self._sliding.items()
            if log.times[-1] <= now_ms - log.window_seconds * 1000
        ]:
            del self._sliding[key]


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

    def _sliding_key(self, key: str) -> str:
        return f"{self._prefix}sliding:{key}"

    def hit_sliding(self, key: str, limit: int, window_seconds: int) -> SlidingWindow:
        now_ms = _now_ms()
        redis_key = self._sliding_key(key)
        pipe = self._redis.pipeline()  # MULTI: one round trip, and no other hit in between
        pipe.lpush(redis_key, now_ms)
        pipe.ltrim(redis_key, 0, limit)
        # Nothing in the log matters once its latest hit has slid out; a little longer for app
        # nodes whose clocks disagree a little.
        pipe.expire(redis_key, window_seconds + 5)
        pipe.lrange(redis_key, 0, limit)
        *_, times = pipe.execute()
        return _sliding_window(map(int, times), limit, window_seconds, now_ms, after_hit=True)

    def peek_sliding(self, key: str, limit: int, window_seconds: int) -> SlidingWindow:
        now_ms = _now_ms()
        times = self._redis.lrange(self._sliding_key(key), 0, limit)
        return _sliding_window(map(int, times), limit, window_seconds, now_ms, after_hit=False)

    def reset_sliding(self, key: str) -> None:
        # One key per log, so no SCAN (which visits every key in Redis) to find it.
        self._redis.delete(self._sliding_key(key))


def build_rate_limiter(redis_url: str) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()
