"""Sign-in throttling, per client IP and per account.

Failed attempts count in sliding windows on the app's rate limiter (Redis when configured, so
every app node shares the count; process memory otherwise). Once the IP or the account has
`login_max_attempts` failures within the last `login_window_seconds`, sign-in is refused, even
with the right password, until the oldest of those has slid out of the window; the 429's
Retry-After says when. (A fixed window would let a guesser spend the limit just before its end
and again just after its start.) A successful sign-in resets the account's count (not the IP's:
one good password must not unlock guessing at other accounts from the same address).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.config import Settings
from opencodehub.core.crypto import sha256_hex
from opencodehub.core.errors import TooManyRequests
from opencodehub.core.ratelimit import RateLimiter


class LoginThrottled(TooManyRequests):
    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        minutes = math.ceil(self.retry_after_seconds / 60)
        wait = "a minute" if minutes <= 1 else f"{minutes} minutes"
        super().__init__(
            f"Too many failed sign-in attempts. Try again in {wait}.",
            headers={"Retry-After": str(self.retry_after_seconds)},
        )


def account_key(session: Session, login: str) -> str:
    """One counter per account whether it is named by username or by email; unknown names get
    a counter of their own (hashed, so any input makes a short, safe key)."""
    login = (login or "").strip()
    user = None
    if 0 < len(login) <= 254 and not any(ord(char) < 0x20 for char in login):
        user = (
            accounts.get_user_by_email(session, login)
            if "@" in login
            else accounts.get_user(session, login)
        )
    if user is not None:
        return f"login:account:user:{user.id}"
    return f"login:account:name:{sha256_hex(login.lower())[:32]}"


def ip_key(ip_address: str) -> str:
    return f"login:ip:{sha256_hex(ip_address or 'unknown')[:32]}"


@dataclass(frozen=True)
class LoginThrottle:
    limiter: RateLimiter
    max_attempts: int
    window_seconds: int

    @classmethod
    def from_settings(cls, limiter: RateLimiter, settings: Settings) -> LoginThrottle:
        return cls(limiter, settings.login_max_attempts, settings.login_window_seconds)

    def check(self, ip_address: str, account: str) -> None:
        """Raise `LoginThrottled` when the IP or the account has used up its attempts."""
        windows = [
            self.limiter.peek_sliding(key, self.max_attempts, self.window_seconds)
            for key in (ip_key(ip_address), account)
        ]
        refused = [window.retry_after for window in windows if not window.allowed]
        if refused:
            # Both must admit one more before an attempt goes through: wait for the slower one.
            raise LoginThrottled(max(refused))

    def record_failure(self, ip_address: str, account: str) -> None:
        self.limiter.hit_sliding(ip_key(ip_address), self.max_attempts, self.window_seconds)
        self.limiter.hit_sliding(account, self.max_attempts, self.window_seconds)

    def record_success(self, account: str) -> None:
        self.limiter.reset_sliding(account)
