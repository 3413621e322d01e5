"""A short-lived memory of successful password checks for git over HTTP.

git sends the credentials again with every request of a fetch or push (the ref advertisement,
then one or more `git-upload-pack` / `git-receive-pack` posts), and each password check is an
argon2 hash costing tens of milliseconds of CPU. A success is remembered for `TTL_SECONDS` under
an HMAC of (username, password) keyed with a random per-process key, so the password is never
kept, not even as a fast hash someone could brute-force from a memory dump. A remembered success
only stands while the account still has the same password hash and is active: a password change
(which writes a new salted hash), a reset or a deactivation ends it at once. Failures are never
remembered, so a wrong password always costs a real check (and the same time).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import AccountKind, User
from opencodehub.accounts.security.service import refuse_password_if_two_factor
from opencodehub.deps import actor_from_authorization, parse_authorization

TTL_SECONDS = 60.0
MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _Success:
    user_id: int
    password_hash: str
    expires: float


class PasswordCheckCache:
    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._key = secrets.token_bytes(32)
        self._items: OrderedDict[bytes, _Success] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, username: str, password: str) -> bytes:
        message = username.casefold().encode() + b"\x00" + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def lookup(self, session: Session, username: str, password: str) -> User | None:
        """The user a remembered success names, if it still holds."""
        digest = self._digest(username, password)
        now = time.monotonic()
        with self._lock:
            found = self._items.get(digest)
            if found is not None and found.expires <= now:
                del self._items[digest]
                found = None
        if found is None:
            return None
        user = session.get(User, found.user_id)
        if (
            user is None
            or not user.is_active
            or user.kind != AccountKind.USER
            or not user.password_hash
            or not hmac.compare_digest(user.password_hash, found.password_hash)
        ):
            self.forget(username, password)
            return None
        return user

    def remember(self, username: str, password: str, user: User) -> None:
        if not user.password_hash:
            return
        digest = self._digest(username, password)
        success = _Success(user.id, user.password_hash, time.monotonic() + self._ttl)
        with self._lock:
            self._items[digest] = success
            self._items.move_to_end(digest)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def forget(self, username: str, password: str) -> None:
        with self._lock:
            self._items.pop(self._digest(username, password), None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def actor_for_git(session: Session, authorization: str, cache: PasswordCheckCache) -> Actor:
    """`deps.actor_from_authorization`, with password successes remembered for a minute.

    Tokens are resolved as always (a SHA-256 lookup: already cheap); only username + password
    goes through the cache. Raises what `actor_from_authorization` raises."""
    parsed = parse_authorization(authorization)
    password_basic = (
        parsed is not None and parsed[0] == "basic" and not accounts.looks_like_token(parsed[2])
    )
    if parsed is not None and password_basic:
        user = cache.lookup(session, parsed[1], parsed[2])
        if user is not None:
            # Two-factor may have been turned on since the password was remembered.
            refuse_password_if_two_factor(session, user)
            return Actor(user=user, method="password")
    actor = actor_from_authorization(session, authorization)
    if parsed is not None and password_basic and actor.method == "password" and actor.user:
        cache.remember(parsed[1], parsed[2], actor.user)
    return actor
