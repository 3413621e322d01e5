"""Fixtures for the account-security tests: a fixed TOTP clock and signed-in clients."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, update

from opencodehub.accounts.security import totp
from opencodehub.accounts.security.models import AuditEvent, SudoGrant
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.web.forms import csrf_from, log_in, page_token, post_form

STEP = 60_000_000  # a fixed 30-second step, so codes never straddle a boundary mid-test
_SECRET_RE = re.compile(r'data-testid="totp-secret">([A-Z2-7 ]+)<')
_CODES_RE = re.compile(r'data-testid="recovery-codes">([^<]*)<')


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The server's TOTP time step; tests move it by assigning `clock[0]`."""
    now = [STEP]
    monkeypatch.setattr(totp, "current_step", lambda at=None: now[0])
    return now


def code(secret: str, step: int) -> str:
    return totp.code_at_step(secret.replace(" ", ""), step)


def enrol_totp(client: TestClient, clock: list[int]) -> tuple[str, list[str]]:
    """Enrol an authenticator app through the settings pages; (secret, recovery codes)."""
    page = client.get("/settings/security/totp")
    assert page.status_code == 200, page.text
    match = _SECRET_RE.search(page.text)
    assert match, "the set-up page shows no secret"
    secret = match.group(1).replace(" ", "")
    assert "<svg" in page.text
    response = client.post(
        "/settings/security/totp/confirm",
        data={"csrf_token": csrf_from(page.text), "code": code(secret, clock[0])},
        follow_redirects=False,
    )
    assert response.status_code == 200, response.text
    codes_match = _CODES_RE.search(response.text)
    assert codes_match
    codes = codes_match.group(1).split()
    assert len(codes) == 10
    return secret, codes


def two_factor_post(client: TestClient, **data: str):
    token = page_token(client, "/login/two-factor")
    return client.post(
        "/login/two-factor", data={"csrf_token": token, **data}, follow_redirects=False
    )


def audit_events(db: Database, name: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def expire_sudo(db: Database) -> None:
    """End every sudo grant (a minute ago: MariaDB keeps whole seconds, and rounds)."""
    with db.session() as session:
        session.execute(update(SudoGrant).values(expires_at=utcnow() - timedelta(minutes=1)))


@pytest.fixture
def signed_in(client: TestClient, make_user: Callable[..., object]) -> TestClient:
    make_user("alice")
    response = log_in(client, "alice")
    assert response.status_code == 303
    return client


@pytest.fixture
def with_totp(signed_in: TestClient, clock: list[int]) -> tuple[str, list[str]]:
    """alice, signed in (`signed_in`), has enrolled an authenticator app: (secret, recovery
    codes)."""
    return enrol_totp(signed_in, clock)


def sign_out(client: TestClient) -> None:
    assert post_form(client, "/", "/logout").status_code == 303
    client.cookies.clear()


def sign_in_again(client: TestClient, login: str = "alice") -> Response:
    """Sign out, then sign in with the password again: with a second factor enrolled the answer
    sends the browser on to `/login/two-factor`."""
    sign_out(client)
    return log_in(client, login)
