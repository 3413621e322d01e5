"""Sign-in throttling per IP and per account, in memory and in Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, cast

import pytest
import redis
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.accounts.throttle import LoginThrottle, LoginThrottled, ip_key
from opencodehub.core import ratelimit
from opencodehub.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import PASSWORD, REDIS_TEST_URL
from tests.web.forms import log_in


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter()
        return
    connection = redis.Redis.from_url(REDIS_TEST_URL)
    connection.flushdb()
    try:
        yield RedisRateLimiter(REDIS_TEST_URL)
    finally:
        connection.flushdb()
        connection.close()


def test_throttle_blocks_after_max_failures_and_success_resets_account(
    limiter: RateLimiter,
) -> None:
    throttle = LoginThrottle(limiter, max_attempts=3, window_seconds=300)
    account = "login:account:user:1"
    for _ in range(3):
        throttle.check("10.0.0.1", account)
        throttle.record_failure("10.0.0.1", account)
    with pytest.raises(LoginThrottled) as raised:
        throttle.check("10.0.0.2", account)  # another address: the account itself is locked
    assert raised.value.status_code == 429
    assert int(raised.value.headers["Retry-After"]) in range(1, 301)
    assert "Too many failed sign-in attempts" in raised.value.message
    with pytest.raises(LoginThrottled):
        throttle.check("10.0.0.1", "login:account:user:2")  # the address is locked too

    throttle.record_success(account)
    throttle.check("10.0.0.2", account)  # the account counter was reset
    with pytest.raises(LoginThrottled):
        throttle.check("10.0.0.1", "login:account:user:3")  # the IP counter was not


class Clock(Protocol):
    now: float


@pytest.fixture
def clock() -> Clock:
    """The stopped clock `rate_limit_windows_hold_still` puts in place of the limiter's `time`,
    set to the middle of a five-minute window so each test starts from the same place."""
    stopped = cast(Clock, ratelimit.time)
    stopped.now = (int(stopped.now) // 300 + 1) * 300 + 150
    return stopped


def retry_after(throttle: LoginThrottle, ip_address: str, account: str) -> int:
    with pytest.raises(LoginThrottled) as raised:
        throttle.check(ip_address, account)
    assert raised.value.status_code == 429
    return int(raised.value.headers["Retry-After"])


def test_failures_just_before_a_window_boundary_still_count_just_after_it(
    limiter: RateLimiter, clock: Clock
) -> None:
    throttle = LoginThrottle(limiter, max_attempts=3, window_seconds=300)
    account = "login:account:user:1"
    boundary = (int(clock.now) // 300 + 1) * 300
    clock.now = boundary - 1
    for _ in range(3):
        throttle.check("10.0.0.1", account)
        throttle.record_failure("10.0.0.1", account)
    clock.now = boundary + 1  # fixed windows would allow three more guesses here
    assert retry_after(throttle, "10.0.0.2", account) == 298
    assert retry_after(throttle, "10.0.0.1", "login:account:user:2") == 298
    clock.now = boundary + 298
    assert retry_after(throttle, "10.0.0.2", account) == 1
    clock.now = boundary + 299  # the three are 300 s old
    throttle.check("10.0.0.1", account)


def test_failures_age_out_of_the_window(limiter: RateLimiter, clock: Clock) -> None:
    throttle = LoginThrottle(limiter, max_attempts=3, window_seconds=300)
    account = "login:account:user:1"
    failed_at = clock.now
    throttle.record_failure("10.0.0.1", account)
    clock.now = failed_at + 100
    throttle.record_failure("10.0.0.1", account)
    throttle.record_failure("10.0.0.1", account)
    assert retry_after(throttle, "10.0.0.1", account) == 200  # when the first is 300 s old
    clock.now = failed_at + 299
    assert retry_after(throttle, "10.0.0.1", account) == 1
    clock.now = failed_at + 300
    throttle.check("10.0.0.1", account)
    throttle.record_failure("10.0.0.1", account)  # two left in the window, and this one
    assert retry_after(throttle, "10.0.0.1", account) == 100
    clock.now = failed_at + 700
    assert limiter.peek_sliding(account, 3, 300).used == 0
    assert limiter.peek_sliding(ip_key("10.0.0.1"), 3, 300).used == 0


def test_retry_after_waits_for_both_the_address_and_the_account(
    limiter: RateLimiter, clock: Clock
) -> None:
    throttle = LoginThrottle(limiter, max_attempts=3, window_seconds=300)
    account = "login:account:user:1"
    for _ in range(3):
        throttle.record_failure("10.0.0.1", account)
    clock.now += 60
    for _ in range(3):
        throttle.record_failure("10.0.0.2", account)
    assert retry_after(throttle, "10.0.0.1", "login:account:user:2") == 240  # the address
    assert retry_after(throttle, "10.0.0.3", account) == 300  # the account
    assert retry_after(throttle, "10.0.0.1", account) == 300  # both: the later one


def test_success_resets_the_account_but_not_the_address(limiter: RateLimiter, clock: Clock) -> None:
    throttle = LoginThrottle(limiter, max_attempts=3, window_seconds=300)
    account = "login:account:user:1"
    boundary = (int(clock.now) // 300 + 1) * 300
    clock.now = boundary - 1
    throttle.record_failure("10.0.0.1", account)
    throttle.record_failure("10.0.0.1", account)
    clock.now = boundary + 1
    throttle.record_failure("10.0.0.1", account)
    throttle.record_success(account)
    assert limiter.peek_sliding(account, 3, 300).used == 0
    throttle.check("10.0.0.2", account)
    assert retry_after(throttle, "10.0.0.1", "login:account:user:2") == 298


def test_ip_keys_are_bounded_and_opaque() -> None:
    assert ip_key("") == ip_key("unknown")
    assert len(ip_key("x" * 10_000)) < 64
    assert "'" not in ip_key("1'; DEL *")


def test_reset_on_redis_names_the_keys_instead_of_scanning(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = redis.Redis.from_url(REDIS_TEST_URL)
    connection.flushdb()
    limiter = RedisRateLimiter(REDIS_TEST_URL)
    try:
        throttle = LoginThrottle(limiter, max_attempts=3, window_seconds=300)
        throttle.record_failure("10.0.0.1", "login:account:user:1")
        throttle.record_failure("10.0.0.1", "login:account:user:2")
        assert connection.dbsize() == 3
        assert all(300 <= connection.ttl(key) <= 305 for key in connection.scan_iter())

        def no_scanning(*args: object, **kwargs: object) -> None:
            raise AssertionError("SCAN and KEYS visit every key in Redis")

        for command in ("scan", "scan_iter", "keys"):
            monkeypatch.setattr(limiter._redis, command, no_scanning)  # the test's own client
        throttle.record_success("login:account:user:1")
        assert connection.dbsize() == 2
        assert limiter.peek_sliding("login:account:user:2", 3, 300).used == 1
    finally:
        connection.flushdb()
        connection.close()


@pytest.fixture
def throttled_client(client: TestClient, limiter: RateLimiter) -> Iterator[TestClient]:
    client.app.state.rate_limiter = limiter
    client.app.state.settings = client.app.state.settings.model_copy(
        update={"login_max_attempts": 3, "login_window_seconds": 300}
    )
    yield client


def test_login_form_answers_429_past_the_limit_even_with_the_right_password(
    throttled_client: TestClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    for _ in range(3):
        assert log_in(throttled_client, "alice", "wrong password").status_code == 422
    response = log_in(throttled_client, "alice", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.text
    assert response.headers["retry-after"]
    assert "och_session" not in response.cookies
    # The account is locked by email too: one counter per account, however it is named.
    assert log_in(throttled_client, "alice@example.com", PASSWORD).status_code == 429


def test_success_resets_the_account_counter(
    throttled_client: TestClient, make_user: Callable[..., User], limiter: RateLimiter
) -> None:
    alice = make_user("alice")
    account = f"login:account:user:{alice.id}"
    for _ in range(2):
        log_in(throttled_client, "alice@example.com", "wrong password")
    assert limiter.peek_sliding(account, 3, 300).used == 2
    assert log_in(throttled_client, "alice", PASSWORD).status_code == 303
    assert limiter.peek_sliding(account, 3, 300).used == 0
    # The address keeps its count: one more failure from it and it is locked.
    assert limiter.peek_sliding(ip_key("testclient"), 3, 300).used == 2


def test_ip_limit_covers_unknown_accounts(
    throttled_client: TestClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    for name in ("nobody1", "nobody2", "nobody3"):
        assert log_in(throttled_client, name, "guess").status_code == 422
    # This address has used its attempts, so even alice's right password is refused here.
    assert log_in(throttled_client, "alice", PASSWORD).status_code == 429
