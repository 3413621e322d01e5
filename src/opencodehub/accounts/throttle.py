"""Sign-in throttling, per client IP and per account.

Failed attempts count in fixed windows on the app's rate limiter (Redis when configured, so every
app node shares the count; process memory otherwise). Once either counter reaches
`login_max_attempts` within `login_window_seconds`, sign-in is refused, even with the right
password, until the window ends. A successful sign-in resets the account's counter (not the IP's:
one good password must not unlock guessing at other accounts from the same address).
"""

from __future__ import annotations

import math
import time
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
        for key in (ip_key(ip_address), account):
            window = self.limiter.peek(key, self.max_attempts, self.window_seconds)
            if not window.allowed:
                raise LoginThrottled(window.reset_at - int(time.time()))

    def record_failure(self, ip_address: str, account: str) -> None:
        self.limiter.hit(ip_key(ip_address), self.max_attempts, self.window_seconds)
        self.limiter.hit(account, self.max_attempts, self.window_seconds)

    def record_success(self, account: str) -> None:
        self.limiter.reset(account)
