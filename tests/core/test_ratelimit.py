"""Rate limit counters: fixed windows (the REST API) and sliding logs (sign-in throttling), in
memory and in Redis, on the stopped clock from tests/conftest.py moved by hand."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Protocol, cast

import pytest
import redis

from opencodehub.core import ratelimit
from opencodehub.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import REDIS_TEST_URL

WINDOW = 300


class Clock(Protocol):
    now: float


@pytest.fixture
def clock() -> Clock:
    """The stopped clock `rate_limit_windows_hold_still` puts in place of the limiter's `time`,
    set to the middle of a window so each test starts from a known place."""
    stopped = cast(Clock, ratelimit.time)
    stopped.now = (int(stopped.now) // WINDOW + 1) * WINDOW + WINDOW / 2
    return stopped


@pytest.fixture
def connection() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def prefix(connection: redis.Redis) -> Iterator[str]:
    """A key prefix of the test's own, so no other test's keys are touched (nor emptied)."""
    prefix = f"och:test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(connection.scan_iter(f"{prefix}*"))
    if keys:
        connection.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest, prefix: str) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter()
    return RedisRateLimiter(REDIS_TEST_URL, prefix=prefix)


def window_start(clock: Clock) -> int:
    return int(clock.now // WINDOW) * WINDOW


# Fixed windows (the REST API's): unchanged ------------------------------------------------------


def test_fixed_window_counts_until_its_aligned_end(limiter: RateLimiter, clock: Clock) -> None:
    end = window_start(clock) + WINDOW
    assert [limiter.hit("api", 2, WINDOW).allowed for _ in range(3)] == [True, True, False]
    window = limiter.peek("api", 2, WINDOW)
    assert (window.used, window.remaining, window.allowed, window.reset_at) == (3, 0, False, end)
    clock.now = end  # the next window starts from nothing: this is what X-RateLimit-Reset says
    assert limiter.peek("api", 2, WINDOW).used == 0
    assert limiter.hit("api", 2, WINDOW).reset_at == end + WINDOW


# Sliding windows (sign-in throttling) -----------------------------------------------------------


def test_sliding_window_refuses_the_burst_around_a_boundary(
    limiter: RateLimiter, clock: Clock
) -> None:
    boundary = window_start(clock) + WINDOW
    clock.now = boundary - 1
    assert [limiter.hit_sliding("k", 3, WINDOW).allowed for _ in range(3)] == [True] * 3
    assert not limiter.peek_sliding("k", 3, WINDOW).allowed
    clock.now = boundary + 1  # a fixed window would start from nothing here
    window = limiter.peek_sliding("k", 3, WINDOW)
    assert (window.allowed, window.used, window.retry_after) == (False, 3, WINDOW - 2)
    assert not limiter.hit_sliding("k", 3, WINDOW).allowed  # and a hit now does not fit


def test_sliding_window_retry_after_is_exact(limiter: RateLimiter, clock: Clock) -> None:
    """Hits spread over the last windows, in several mixes: at `retry_after` one more is
    allowed, a second earlier it is not."""
    start = clock.now
    # (hit times relative to now, seconds until the third latest hit in the window leaves it)
    for number, (offsets, retry_after) in enumerate(
        [
            ((0, 0, 0), WINDOW),
            ((0, 0, 0, 0, 0), WINDOW),
            ((-400, -290, -10, 0), 10),
            ((-299.5, -200.25, -100.75), 1),  # real clocks are not on whole seconds: 0.5 s up
            ((-250, -1, -1, -1), WINDOW - 1),
            ((-600, -300, -299, 0, 0), 1),  # -300 is exactly one window old: out
        ]
    ):
        key = f"mix:{number}"
        for offset in offsets:
            clock.now = start + offset
            limiter.hit_sliding(key, 3, WINDOW)
        clock.now = start
        window = limiter.peek_sliding(key, 3, WINDOW)
        assert not window.allowed, offsets
        assert window.retry_after == retry_after, offsets
        clock.now = start + window.retry_after - 1
        assert not limiter.peek_sliding(key, 3, WINDOW).allowed, offsets
        clock.now = start + window.retry_after
        assert limiter.peek_sliding(key, 3, WINDOW).allowed, offsets
        assert limiter.peek_sliding(key, 3, WINDOW).retry_after == 0


def test_sliding_window_ages_out(limiter: RateLimiter, clock: Clock) -> None:
    failed_at = clock.now
    for _ in range(2):
        limiter.hit_sliding("k", 3, WINDOW)
    clock.now = failed_at + 100
    limiter.hit_sliding("k", 3, WINDOW)
    window = limiter.peek_sliding("k", 3, WINDOW)
    assert (window.allowed, window.used, window.retry_after) == (False, 3, WINDOW - 100)
    clock.now = failed_at + WINDOW - 0.001
    assert limiter.peek_sliding("k", 3, WINDOW).used == 3
    clock.now = failed_at + WINDOW
    assert limiter.peek_sliding("k", 3, WINDOW).used == 1
    clock.now = failed_at + WINDOW + 100
    assert limiter.peek_sliding("k", 3, WINDOW).used == 0
    assert limiter.hit_sliding("k", 3, WINDOW).used == 1


def test_sliding_window_hit_reports_whether_it_fitted(limiter: RateLimiter, clock: Clock) -> None:
    assert limiter.hit_sliding("k", 2, WINDOW).allowed
    second = limiter.hit_sliding("k", 2, WINDOW)
    assert (second.allowed, second.used, second.limit) == (True, 2, 2)
    assert second.retry_after == WINDOW  # allowed itself, but it used the last one
    third = limiter.hit_sliding("k", 2, WINDOW)
    assert (third.allowed, third.used) == (False, 3)


def test_sliding_log_stays_bounded(limiter: RateLimiter, clock: Clock) -> None:
    for _ in range(50):
        limiter.hit_sliding("k", 3, WINDOW)
    # It only has to tell "over the limit" from "at it": the latest limit + 1 hits do.
    assert limiter.peek_sliding("k", 3, WINDOW).used == 4
    assert limiter.peek_sliding("k", 3, WINDOW).retry_after == WINDOW


def test_sliding_reset_clears_the_key_only(limiter: RateLimiter, clock: Clock) -> None:
    limiter.hit_sliding("a", 3, WINDOW)
    limiter.hit_sliding("b", 3, WINDOW)
    clock.now += 100
    limiter.hit_sliding("a", 3, WINDOW)
    limiter.reset_sliding("a")
    assert limiter.peek_sliding("a", 3, WINDOW).used == 0
    assert limiter.peek_sliding("b", 3, WINDOW).used == 1


def test_sliding_and_fixed_counts_are_separate(limiter: RateLimiter, clock: Clock) -> None:
    limiter.hit("k", 3, WINDOW)
    limiter.hit_sliding("k", 3, WINDOW)
    limiter.hit_sliding("k", 3, WINDOW)
    assert limiter.peek("k", 3, WINDOW).used == 1
    assert limiter.peek_sliding("k", 3, WINDOW).used == 2
    limiter.reset_sliding("k")
    assert limiter.peek_sliding("k", 3, WINDOW).used == 0
    assert limiter.peek("k", 3, WINDOW).used == 1


def test_memory_prunes_logs_once_they_are_out_of_the_window(clock: Clock) -> None:
    limiter = MemoryRateLimiter()
    limiter.hit_sliding("old", 3, WINDOW)
    clock.now += WINDOW
    limiter.hit_sliding("new", 3, WINDOW)
    limiter._prune()
    assert set(limiter._sliding) == {"new"}


def test_redis_logs_are_bounded_and_expire_on_their_own(
    connection: redis.Redis, prefix: str, clock: Clock
) -> None:
    limiter = RedisRateLimiter(REDIS_TEST_URL, prefix=prefix)
    for _ in range(10):
        limiter.hit_sliding("k", 3, WINDOW)
    (key,) = connection.scan_iter(f"{prefix}*")
    assert connection.llen(key) == 4
    # Nothing in it counts once its latest hit is a window old.
    assert WINDOW <= connection.ttl(key) <= WINDOW + 5


def test_redis_sliding_reset_names_its_key_instead_of_scanning(
    connection: redis.Redis, prefix: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisRateLimiter(REDIS_TEST_URL, prefix=prefix)
    limiter.hit_sliding("a", 3, WINDOW)
    limiter.hit_sliding("b", 3, WINDOW)
    limiter.hit_sliding("a:b", 3, WINDOW)

    def no_scanning(*args: object, **kwargs: object) -> None:
        raise AssertionError("SCAN and KEYS visit every key in Redis")

    for command in ("scan", "scan_iter", "keys"):
        monkeypatch.setattr(limiter._redis, command, no_scanning)  # the test's own client
    limiter.reset_sliding("a")
    assert sorted(key.decode() for key in connection.scan_iter(f"{prefix}*")) == [
        f"{prefix}sliding:a:b",
        f"{prefix}sliding:b",
    ]
