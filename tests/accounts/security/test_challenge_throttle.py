"""Failed two-factor codes count in a sliding window: no burst of guesses around a boundary."""

from __future__ import annotations

from typing import Protocol, cast

import pytest

from opencodehub.accounts.security import service as security
from opencodehub.core import ratelimit
from opencodehub.core.ratelimit import MemoryRateLimiter

MAX = security.CHALLENGE_MAX_FAILURES
WINDOW = security.CHALLENGE_WINDOW_SECONDS


class Clock(Protocol):
    now: float


def test_failures_just_before_a_boundary_still_count_just_after_it() -> None:
    clock = cast(Clock, ratelimit.time)  # stopped by tests/conftest.py, moved by hand here
    clock.now = (int(clock.now) // WINDOW + 1) * WINDOW - 1  # a second before a fixed boundary
    limiter = MemoryRateLimiter()
    for _ in range(MAX):
        security.check_challenge(limiter, 7)
        security.record_challenge_failure(limiter, 7)
    clock.now += 2  # a fixed window would have started again from nothing
    with pytest.raises(security.ChallengeThrottled) as refused:
        security.check_challenge(limiter, 7)
    assert refused.value.retry_after_seconds == WINDOW - 2
    security.check_challenge(limiter, 8)  # another account is not affected

    clock.now += WINDOW - 2  # the first failures have left the window
    security.check_challenge(limiter, 7)


def test_a_correct_code_clears_the_failures() -> None:
    limiter = MemoryRateLimiter()
    for _ in range(MAX):
        security.record_challenge_failure(limiter, 7)
    with pytest.raises(security.ChallengeThrottled):
        security.check_challenge(limiter, 7)
    security.reset_challenge(limiter, 7)
    security.check_challenge(limiter, 7)
