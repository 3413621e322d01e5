"""Sign-in throttling per IP and per account, in memory and in Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.accounts.throttle import LoginThrottle, LoginThrottled, ip_key
from opencodehub.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import PASSWORD
from tests.web.forms import log_in

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


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


def test_ip_keys_are_bounded_and_opaque() -> None:
    assert ip_key("") == ip_key("unknown")
    assert len(ip_key("x" * 10_000)) < 64
    assert "'" not in ip_key("1'; DEL *")


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
    assert limiter.peek(account, 3, 300).used == 2
    assert log_in(throttled_client, "alice", PASSWORD).status_code == 303
    assert limiter.peek(account, 3, 300).used == 0
    # The address keeps its count: one more failure from it and it is locked.
    assert limiter.peek(ip_key("testclient"), 3, 300).used == 2


def test_ip_limit_covers_unknown_accounts(
    throttled_client: TestClient, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    for name in ("nobody1", "nobody2", "nobody3"):
        assert log_in(throttled_client, name, "guess").status_code == 422
    # This address has used its attempts, so even alice's right password is refused here.
    assert log_in(throttled_client, "alice", PASSWORD).status_code == 429
