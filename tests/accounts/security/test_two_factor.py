"""Two-factor sign-in with an authenticator app and recovery codes, through the HTML forms."""

from __future__ import annotations

import base64
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts.security.models import RecoveryCode, TotpDevice
from opencodehub.db.engine import Database
from tests.accounts.security.conftest import (
    audit_events,
    code,
    enrol_totp,
    sign_in_again,
    two_factor_post,
)
from tests.conftest import PASSWORD
from tests.repos.git_helpers import create_repo
from tests.web.forms import log_in, post_form


def test_enrol_sign_in_with_code_replay_refused(
    signed_in: TestClient, with_totp: tuple[str, list[str]], clock: list[int], db: Database
) -> None:
    client = signed_in
    secret, _ = with_totp
    with db.session() as session:
        device = session.scalar(select(TotpDevice))
        assert device is not None and device.confirmed_at is not None
        # Encrypted at rest: the secret is not in the column.
        assert secret not in device.secret_encrypted
    assert 'data-testid="totp-enabled"' in client.get("/settings/security").text
    response = sign_in_again(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/login/two-factor"
    # No session yet: the pending sign-in opens nothing else.
    assert client.get("/settings/profile", follow_redirects=False).status_code == 303
    assert client.get("/api/v3/user").status_code == 401

    clock[0] += 1
    # The code already used to confirm the set-up is refused (its step was used).
    refused = two_factor_post(client, code=code(secret, clock[0] - 1))
    assert refused.status_code == 422
    assert "Incorrect or already used code" in refused.text
    accepted = two_factor_post(client, code=code(secret, clock[0]))
    assert accepted.status_code == 303 and accepted.headers["location"] == "/"
    assert client.get("/api/v3/user").json()["login"] == "alice"
    sign_ins = audit_events(db, "user.sign_in")
    assert sign_ins[-1].details == {"method": "password", "two_factor": "totp"}
    # The same code again, in a new sign-in: a replay, refused.
    sign_in_again(client)
    assert two_factor_post(client, code=code(secret, clock[0])).status_code == 422
    # Two steps away is outside the window (unless it happens to equal a valid code).
    valid = {code(secret, step) for step in range(clock[0] - 1, clock[0] + 2)}
    for far in (clock[0] - 2, clock[0] + 2):
        if code(secret, far) not in valid:
            assert two_factor_post(client, code=code(secret, far)).status_code == 422
    # One step ahead is inside the window and unused.
    assert two_factor_post(client, code=code(secret, clock[0] + 1)).status_code == 303


def test_brute_force_locks_the_challenge(
    signed_in: TestClient, with_totp: tuple[str, list[str]], clock: list[int], db: Database
) -> None:
    client = signed_in
    secret, _ = with_totp
    sign_in_again(client)
    right = code(secret, clock[0] + 1)
    wrong = "000000" if right != "000000" else "111111"
    clock[0] += 1
    for _ in range(5):
        assert two_factor_post(client, code=wrong).status_code == 422
    locked = two_factor_post(client, code=right)
    assert locked.status_code == 429
    assert "Too many failed two-factor attempts" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    assert len(audit_events(db, "two_factor.failed")) == 5


def test_recovery_codes_are_single_use(
    signed_in: TestClient, with_totp: tuple[str, list[str]], clock: list[int], db: Database
) -> None:
    client = signed_in
    _, codes = with_totp
    with db.session() as session:
        stored = list(session.scalars(select(RecoveryCode.code_hash)))
    assert len(stored) == 10 and not set(codes) & set(stored)
    sign_in_again(client)
    used = two_factor_post(client, recovery_code=codes[0].upper())
    assert used.status_code == 303
    assert audit_events(db, "two_factor.recovery_code_used")[0].details == {"remaining": 9}
    sign_in_again(client)
    again = two_factor_post(client, recovery_code=codes[0])
    assert again.status_code == 422 and "Incorrect recovery code" in again.text
    assert two_factor_post(client, recovery_code="not-a-code").status_code == 422
    assert two_factor_post(client, recovery_code=codes[1]).status_code == 303

    # Regenerating (in sudo mode, fresh after sign-in) replaces every old code.
    fresh = post_form(client, "/settings/security", "/settings/security/recovery-codes")
    assert fresh.status_code == 200
    sign_in_again(client)
    assert two_factor_post(client, recovery_code=codes[2]).status_code == 422


def test_forged_pending_sign_in_and_unknown_account(
    client: TestClient, make_user: Callable[..., object], db: Database
) -> None:
    make_user("alice")
    client.cookies.set("och_2fa", "eyJ1c2VyIjoxfQ.forged")
    response = client.get("/login/two-factor", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert two_factor_post_raw(client).status_code == 403  # no CSRF token without a page

    assert log_in(client, "ghost-user", "whatever").status_code == 422
    [event] = audit_events(db, "user.failed_sign_in")
    assert event.user_id is None and event.details["login"] == "ghost-user"


def two_factor_post_raw(client: TestClient):  # type: ignore[no-untyped-def]
    return client.post("/login/two-factor", data={"code": "123456"}, follow_redirects=False)


def _basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def test_password_refused_over_git_http_and_api_for_two_factor_accounts(
    signed_in: TestClient,
    clock: list[int],
    db: Database,
    settings: object,
    make_token: Callable[..., str],
) -> None:
    client = signed_in
    with db.session() as session:
        from opencodehub.accounts.models import User

        alice = session.scalar(select(User).where(User.username == "alice"))
        assert alice is not None
        session.expunge(alice)
    create_repo(db, settings, alice, "secret-project")  # type: ignore[arg-type]
    info_refs = "/alice/secret-project.git/info/refs?service=git-upload-pack"

    # Before 2FA the password works for the API.
    assert client.get("/api/v3/user", headers=_basic("alice", PASSWORD)).status_code == 200
    enrol_totp(client, clock)
    client.cookies.clear()

    refused = client.get(info_refs, headers=_basic("alice", PASSWORD))
    assert refused.status_code == 401
    assert "two-factor authentication" in refused.text
    assert "personal access token" in refused.text
    api = client.get("/api/v3/user", headers=_basic("alice", PASSWORD))
    assert api.status_code == 401
    assert "personal access token" in api.json()["message"]
    # A wrong password is just bad credentials, as before.
    assert "two-factor" not in client.get("/api/v3/user", headers=_basic("alice", "nope")).text

    token = make_token(alice, ["repo"])
    assert client.get(info_refs, headers=_basic("alice", token)).status_code == 200
    assert client.get("/api/v3/user", headers=_basic("alice", token)).json()["login"] == "alice"
