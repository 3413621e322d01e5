"""The memory of successful git-over-HTTP password checks (git/credentials.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core.errors import Unauthorized
from opencodehub.db.engine import Database
from opencodehub.git.credentials import PasswordCheckCache, actor_for_git
from tests.conftest import PASSWORD
from tests.git.gitutil import create_repo


def basic(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every real (argon2) password check, by username."""
    calls: list[str] = []
    real = accounts.check_password

    def counting(user: User, password: str) -> bool:
        calls.append(user.username)
        return real(user, password)

    monkeypatch.setattr(accounts, "check_password", counting)
    yield calls


def test_success_is_remembered_and_failures_are_not(
    db: Database, make_user: Callable[..., User], checks: list[str]
) -> None:
    alice = make_user("alice")
    cache = PasswordCheckCache()
    with db.session() as session:
        for _ in range(3):
            actor = actor_for_git(session, basic("alice", PASSWORD), cache)
            assert actor.user is not None and actor.user.id == alice.id
            assert actor.method == "password"
        assert checks == ["alice"]
        for _ in range(2):
            with pytest.raises(Unauthorized):
                actor_for_git(session, basic("alice", "wrong password"), cache)
        assert checks == ["alice", "alice", "alice"]
    assert len(cache) == 1


def test_password_change_and_deactivation_end_a_remembered_success(
    db: Database, make_user: Callable[..., User], checks: list[str]
) -> None:
    alice = make_user("alice")
    cache = PasswordCheckCache()
    with db.session() as session:
        actor_for_git(session, basic("alice", PASSWORD), cache)
        user = session.get(User, alice.id)
        assert user is not None
        accounts.change_password(session, user, PASSWORD, "a brand new passphrase 42")
    with db.session() as session:
        with pytest.raises(Unauthorized):
            actor_for_git(session, basic("alice", PASSWORD), cache)
        assert checks.count("alice") >= 2  # the old password was checked for real again
        actor = actor_for_git(session, basic("alice", "a brand new passphrase 42"), cache)
        assert actor.user is not None
        user = session.get(User, alice.id)
        assert user is not None
        user.is_active = False
    with db.session() as session, pytest.raises(Unauthorized):
        actor_for_git(session, basic("alice", "a brand new passphrase 42"), cache)


def test_expired_success_is_checked_again(
    db: Database, make_user: Callable[..., User], checks: list[str]
) -> None:
    make_user("alice")
    cache = PasswordCheckCache(ttl=0)
    with db.session() as session:
        actor_for_git(session, basic("alice", PASSWORD), cache)
        actor_for_git(session, basic("alice", PASSWORD), cache)
    assert checks == ["alice", "alice"]


def test_remembered_password_is_not_kept_in_clear(
    db: Database, make_user: Callable[..., User]
) -> None:
    make_user("alice")
    cache = PasswordCheckCache()
    with db.session() as session:
        actor_for_git(session, basic("alice", PASSWORD), cache)
    kept = repr(vars(cache)).encode()
    assert PASSWORD.encode() not in kept
    assert base64.b64encode(PASSWORD.encode()) not in kept


def test_tokens_bypass_the_memory(
    db: Database,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
    checks: list[str],
) -> None:
    alice = make_user("alice")
    token = make_token(alice, ["repo"])
    cache = PasswordCheckCache()
    with db.session() as session:
        actor = actor_for_git(session, basic("alice", token), cache)
        assert actor.method != "password" and actor.token_id is not None
    assert checks == [] and len(cache) == 0


def test_git_http_checks_a_password_once_per_clone(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
    checks: list[str],
) -> None:
    """The advertisement and the upload-pack post of one fetch cost one argon2 check."""
    alice = make_user("alice")
    create_repo(db, settings, alice, "secret", private=True, auto_init=True)
    auth = {"Authorization": basic("alice", PASSWORD)}
    refs = client.get("/alice/secret.git/info/refs?service=git-upload-pack", headers=auth)
    assert refs.status_code == 200
    flush = client.post(
        "/alice/secret.git/git-upload-pack",
        headers={**auth, "Content-Type": "application/x-git-upload-pack-request"},
        content=b"0000",
    )
    assert flush.status_code == 200
    again = client.get("/alice/secret.git/info/refs?service=git-upload-pack", headers=auth)
    assert again.status_code == 200
    assert checks == ["alice"]
    wrong = client.get(
        "/alice/secret.git/info/refs?service=git-upload-pack",
        headers={"Authorization": basic("alice", "nope")},
    )
    assert wrong.status_code == 401


def test_turning_on_two_factor_ends_a_remembered_password(
    db: Database, make_user: Callable[..., User], settings: Settings
) -> None:
    from opencodehub.accounts.security import service as security
    from opencodehub.accounts.security.service import PasswordAuthRefused
    from opencodehub.core.time import utcnow

    alice = make_user("alice")
    cache = PasswordCheckCache()
    with db.session() as session:
        assert actor_for_git(session, basic("alice", PASSWORD), cache).user is not None
        user = session.get(User, alice.id)
        assert user is not None
        security.start_totp_enrolment(session, b"k" * 32, user)
        device = security.totp_device(session, user)
        assert device is not None
        device.confirmed_at = utcnow()
    with db.session() as session, pytest.raises(PasswordAuthRefused):
        actor_for_git(session, basic("alice", PASSWORD), cache)
