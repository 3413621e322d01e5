"""API authentication as GitHub's clients send it, token scopes headers and the rate limit."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from opencodehub.accounts.models import AccessToken, User
from opencodehub.app import create_app
from opencodehub.config import Settings
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.conftest import PASSWORD, auth_header


def basic(username: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def assert_bad_credentials(response) -> None:
    assert response.status_code == 401
    assert response.json()["message"] == "Bad credentials"
    assert response.json()["documentation_url"]


def test_anonymous_get_user_requires_authentication(client: TestClient) -> None:
    response = client.get("/api/v3/user")
    assert response.status_code == 401
    assert response.json()["message"] == "Requires authentication"


@pytest.mark.parametrize("scheme", ["token", "Bearer", "bearer", "TOKEN"])
def test_token_schemes(
    client: TestClient, make_user: Callable[..., User], make_token, scheme: str
) -> None:
    token = make_token(make_user("alice"))
    response = client.get("/api/v3/user", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200
    assert response.json()["login"] == "alice"


def test_basic_with_password_and_with_token(
    client: TestClient, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("alice")
    token = make_token(alice)
    assert client.get("/api/v3/user", headers=basic("alice", PASSWORD)).json()["login"] == "alice"
    assert client.get("/api/v3/user", headers=basic("ALICE", PASSWORD)).status_code == 200
    assert client.get("/api/v3/user", headers=basic("alice", token)).json()["login"] == "alice"
    # GitHub ignores the username when the secret is a token.
    assert client.get("/api/v3/user", headers=basic("x-access-token", token)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        basic("alice", "wrong password"),
        basic("nobody", PASSWORD),
        basic("alice\x00", PASSWORD),
        basic("' OR '1'='1", "' OR '1'='1"),
        basic("alice", "x" * 10_000),
        {"Authorization": "token och_" + "A" * 40},
        {"Authorization": "token not-a-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Digest abc"},
    ],
)
def test_wrong_credentials_are_bad_credentials(
    client: TestClient, make_user: Callable[..., User], headers: dict[str, str]
) -> None:
    make_user("alice")
    assert_bad_credentials(client.get("/api/v3/user", headers=headers))
    # A wrong header never falls back to anonymous, even where anonymous would do.
    assert_bad_credentials(client.get("/api/v3/users/alice", headers=headers))


def test_expired_and_revoked_tokens(
    client: TestClient, db: Database, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("alice")
    expired, revoked = make_token(alice, expires_days=1), make_token(alice)
    assert client.get("/api/v3/user", headers=auth_header(expired)).status_code == 200
    with db.session() as session:
        session.execute(
            update(AccessToken)
            .where(AccessToken.token_last_eight == expired[-8:])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.execute(
            update(AccessToken)
            .where(AccessToken.token_last_eight == revoked[-8:])
            .values(revoked_at=utcnow())
        )
    assert_bad_credentials(client.get("/api/v3/user", headers=auth_header(expired)))
    assert_bad_credentials(client.get("/api/v3/user", headers=auth_header(revoked)))
    assert_bad_credentials(client.get("/api/v3/user", headers=basic("alice", revoked)))


def test_disabled_user_cannot_authenticate(
    client: TestClient, db: Database, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("alice")
    token = make_token(alice)
    with db.session() as session:
        session.execute(update(User).where(User.id == alice.id).values(is_active=False))
    assert_bad_credentials(client.get("/api/v3/user", headers=auth_header(token)))
    assert_bad_credentials(client.get("/api/v3/user", headers=basic("alice", PASSWORD)))


def test_oauth_scope_headers(
    client: TestClient, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("alice")
    token = make_token(alice, ["user", "repo"])
    response = client.get("/api/v3/user/keys", headers=auth_header(token))
    # GitHub lists the token's own scopes, not what they imply.
    assert response.headers["X-OAuth-Scopes"] == "repo, user"
    assert response.headers["X-Accepted-OAuth-Scopes"] == (
        "admin:public_key, write:public_key, read:public_key"
    )
    assert response.status_code == 403
    assert response.headers["X-OAuth-Scopes"] == "repo, user"
    ok = client.get("/api/v3/users/alice", headers=auth_header(token))
    assert ok.headers["X-OAuth-Scopes"] == "repo, user"
    empty = make_token(alice, [])
    assert client.get("/api/v3/user", headers=auth_header(empty)).headers["X-OAuth-Scopes"] == ""
    # Password and session callers are not token callers: no scope header.
    assert (
        "X-OAuth-Scopes" not in client.get("/api/v3/user", headers=basic("alice", PASSWORD)).headers
    )


def test_rate_limit_headers_count_down(
    client: TestClient, make_user: Callable[..., User], make_token
) -> None:
    token = make_token(make_user("alice"))
    first = client.get("/api/v3/user", headers=auth_header(token))
    second = client.get("/api/v3/user", headers=auth_header(token))
    assert first.headers["X-RateLimit-Limit"] == "5000"
    assert first.headers["X-RateLimit-Resource"] == "core"
    assert int(first.headers["X-RateLimit-Reset"]) > 0
    assert int(second.headers["X-RateLimit-Remaining"]) == (
        int(first.headers["X-RateLimit-Remaining"]) - 1
    )
    assert int(second.headers["X-RateLimit-Used"]) == int(first.headers["X-RateLimit-Used"]) + 1
    anonymous = client.get("/api/v3/users/alice")
    assert anonymous.headers["X-RateLimit-Limit"] == "60"


@pytest.fixture
def tiny_limit_client(settings: Settings, db: Database) -> Iterator[TestClient]:
    tight = settings.model_copy(update={"rate_limit_authenticated": 3, "rate_limit_anonymous": 2})
    with TestClient(create_app(tight, db)) as test_client:
        yield test_client


def test_rate_limit_exceeded(
    tiny_limit_client: TestClient, make_user: Callable[..., User], make_token
) -> None:
    alice = make_user("alice")
    token = make_token(alice)
    for _ in range(3):
        assert tiny_limit_client.get("/api/v3/user", headers=auth_header(token)).status_code == 200
    refused = tiny_limit_client.get("/api/v3/user", headers=auth_header(token))
    assert refused.status_code == 403
    assert refused.json()["message"] == f"API rate limit exceeded for user ID {alice.id}."
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    for _ in range(2):
        assert tiny_limit_client.get("/api/v3/users/alice").status_code == 200
    anonymous = tiny_limit_client.get("/api/v3/users/alice")
    assert anonymous.status_code == 403
    assert anonymous.json()["message"].startswith("API rate limit exceeded for ")
