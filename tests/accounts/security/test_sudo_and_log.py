"""Sudo mode, sign out everywhere, the security log pages and API, admins required to use 2FA."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from opencodehub.accounts.models import User
from opencodehub.accounts.security.models import AuditEvent, SudoGrant
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.accounts.security.conftest import code, enrol_totp, expire_sudo, two_factor_post
from tests.conftest import PASSWORD, auth_header
from tests.web.forms import csrf_from, log_in, page_token, post_form


def _sudo_grants(db: Database) -> list[SudoGrant]:
    with db.session() as session:
        return list(session.scalars(select(SudoGrant)))


SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@box"
)


def _follow_to_sudo(client: TestClient, response) -> str:  # type: ignore[no-untyped-def]
    """A sudo-protected request answers 303 /login?next=/sudo?next=…, and /login forwards a
    signed-in browser on to /sudo. Returns the sudo page's `next`."""
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/login?next=/sudo")
    hop = client.get(response.headers["location"], follow_redirects=False)
    assert hop.status_code == 303
    location = hop.headers["location"]
    assert location.startswith("/sudo?next=")
    return unquote(location.removeprefix("/sudo?next="))


def test_sudo_required_then_granted_by_password(signed_in: TestClient, db: Database) -> None:
    client = signed_in
    # A fresh sign-in is a fresh proof: sudo mode is on at first.
    added = post_form(client, "/settings/keys", "/settings/keys", {"title": "box", "key": SSH_KEY})
    assert added.status_code == 303
    expire_sudo(db)

    page = client.get("/settings/keys")
    attempt = client.post(
        "/settings/keys",
        data={"csrf_token": csrf_from(page.text), "title": "again", "key": SSH_KEY},
        headers={"referer": "http://testserver/settings/keys"},
        follow_redirects=False,
    )
    assert _follow_to_sudo(client, attempt) == "/settings/keys"
    # Direct GETs of a protected page come back to themselves.
    assert _follow_to_sudo(
        client, client.get("/settings/security/totp", follow_redirects=False)
    ) == ("/settings/security/totp")
    for path in ("/settings/password", "/settings/tokens", "/settings/security/disable"):
        assert _follow_to_sudo(client, post_form(client, "/settings/security", path)) in (
            "/settings/security",
            "/",
        )

    sudo_page = client.get("/sudo?next=/settings/keys")
    assert sudo_page.status_code == 200 and 'name="password"' in sudo_page.text
    wrong = client.post(
        "/sudo",
        data={"csrf_token": csrf_from(sudo_page.text), "password": "wrong", "next": "/x"},
        follow_redirects=False,
    )
    assert wrong.status_code == 422
    evil = client.post(
        "/sudo",
        data={
            "csrf_token": csrf_from(sudo_page.text),
            "password": PASSWORD,
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert evil.status_code == 303 and evil.headers["location"] == "/"
    with db.session() as session:
        assert session.scalar(
            select(AuditEvent).where(AuditEvent.event == "sudo.granted")
        ).details == {"method": "password"}
    # Now in sudo mode: the change goes through.
    token = page_token(client, "/settings/tokens")
    created = client.post(
        "/settings/tokens",
        data={"csrf_token": token, "note": "ci", "expires": "7", "scopes": ["repo"]},
        follow_redirects=False,
    )
    assert created.status_code == 201


def test_sudo_by_totp_code(
    signed_in: TestClient, with_totp: tuple[str, list[str]], clock: list[int], db: Database
) -> None:
    client = signed_in
    secret, _ = with_totp
    expire_sudo(db)
    disable = post_form(client, "/settings/security", "/settings/security/disable")
    _follow_to_sudo(client, disable)
    clock[0] += 1
    token = page_token(client, "/sudo?next=/settings/security")
    granted = client.post(
        "/sudo",
        data={"csrf_token": token, "code": code(secret, clock[0]), "next": "/settings/security"},
        follow_redirects=False,
    )
    assert granted.status_code == 303 and granted.headers["location"] == "/settings/security"
    disabled = post_form(client, "/settings/security", "/settings/security/disable")
    assert disabled.status_code == 303
    assert 'data-testid="totp-enabled"' not in client.get("/settings/security").text


def test_repository_deletion_requires_sudo(
    signed_in: TestClient, db: Database, settings: object
) -> None:
    from tests.repos.git_helpers import create_repo

    client = signed_in
    with db.session() as session:
        alice = session.scalar(select(User).where(User.username == "alice"))
        assert alice is not None
        session.expunge(alice)
    create_repo(db, settings, alice, "doomed")  # type: ignore[arg-type]
    expire_sudo(db)
    response = post_form(
        client,
        "/alice/doomed/settings",
        "/alice/doomed/settings/delete",
        {"confirm": "alice/doomed"},
    )
    _follow_to_sudo(client, response)
    assert client.get("/alice/doomed").status_code == 200


def test_sign_out_everywhere_ends_every_session(
    client: TestClient, make_user: Callable[..., User], db: Database, app: object
) -> None:
    make_user("alice")
    other = TestClient(app, base_url="http://testserver")  # type: ignore[arg-type]
    assert log_in(other, "alice").status_code == 303
    assert log_in(client, "alice").status_code == 303
    response = post_form(client, "/settings/security", "/settings/security/sign-out-everywhere")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/api/v3/user").status_code == 401
    assert other.get("/api/v3/user").status_code == 401
    with db.session() as session:
        event = session.scalar(
            select(AuditEvent).where(AuditEvent.event == "user.sign_out_everywhere")
        )
        assert event is not None and event.details == {"sessions": 2}


def test_security_log_pages_and_api(
    client: TestClient,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    alice = make_user("alice")
    admin = make_user("root-admin", admin=True)
    assert log_in(client, "alice", "wrong password").status_code == 422
    assert log_in(client, "alice").status_code == 303
    post_form(client, "/settings/keys", "/settings/keys", {"title": "box", "key": SSH_KEY})

    page = client.get("/settings/security-log")
    assert page.status_code == 200
    for event in ("user.sign_in", "user.failed_sign_in", "ssh_key.added"):
        assert event in page.text

    token = make_token(alice, ["read:user"])
    listed = client.get("/api/v3/user/security-log?per_page=2", headers=auth_header(token))
    assert listed.status_code == 200
    body = listed.json()
    assert [item["action"] for item in body] == ["ssh_key.added", "user.sign_in"]
    assert body[0]["user"] == "alice" and body[0]["details"]["title"] == "box"
    assert 'rel="next"' in listed.headers["link"]
    assert "/api/v3/user/security-log?" in listed.headers["link"]
    assert all(item["user_id"] == alice.id for item in body)
    narrow = make_token(alice, ["repo"])
    assert client.get("/api/v3/user/security-log", headers=auth_header(narrow)).status_code == 403
    assert client.get("/api/v3/user/security-log?per_page=1000").status_code == 422

    # The site admin's log: not for anyone else, filterable by user and event.
    assert client.get("/-/admin/security-log").status_code == 404
    client.cookies.clear()
    log_in(client, "root-admin")
    everything = client.get("/-/admin/security-log")
    assert everything.status_code == 200 and "alice" in everything.text
    filtered = client.get("/-/admin/security-log?login=alice&event=user.failed_sign_in")
    assert filtered.text.count('data-testid="audit-event"') == 1
    nobody = client.get("/-/admin/security-log?login=nobody")
    assert 'data-testid="audit-event"' not in nobody.text
    assert admin.is_site_admin


def test_admins_must_enrol_when_required(
    client: TestClient,
    make_user: Callable[..., User],
    settings: object,
    clock: list[int],
) -> None:
    settings.require_2fa_for_admins = True  # type: ignore[attr-defined]
    make_user("boss", admin=True)
    make_user("alice")
    assert log_in(client, "alice").headers["location"] == "/"
    client.cookies.clear()

    response = log_in(client, "boss")
    assert response.headers["location"] == "/login/two-factor/enrol"
    assert client.get("/api/v3/user").status_code == 401
    page = client.get("/login/two-factor/enrol")
    assert "requires administrators to use two-factor" in page.text
    secret = page.text.split('data-testid="totp-secret">')[1].split("<")[0].replace(" ", "")
    wrong = client.post(
        "/login/two-factor/enrol",
        data={
            "csrf_token": csrf_from(page.text),
            "code": "000000" if code(secret, clock[0]) != "000000" else "111111",
        },
    )
    assert wrong.status_code == 422
    done = client.post(
        "/login/two-factor/enrol",
        data={"csrf_token": csrf_from(page.text), "code": code(secret, clock[0])},
    )
    assert done.status_code == 200 and 'data-testid="recovery-codes"' in done.text
    assert client.get("/api/v3/user").json()["login"] == "boss"
    client.cookies.clear()
    # From now on the admin signs in with the second factor.
    assert log_in(client, "boss").headers["location"] == "/login/two-factor"
    clock[0] += 1
    assert two_factor_post(client, code=code(secret, clock[0])).status_code == 303


def test_existing_admin_sessions_are_sent_to_enrol(
    app: object,
    settings: object,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
    db: Database,
    clock: list[int],
) -> None:
    from opencodehub.accounts.security.middleware import AdminTwoFactorMiddleware

    app.add_middleware(AdminTwoFactorMiddleware, settings=settings, database=db)  # type: ignore[attr-defined]
    boss = make_user("boss", admin=True)
    with TestClient(app, base_url="http://testserver") as client:  # type: ignore[arg-type]
        assert log_in(client, "boss").headers["location"] == "/"  # signed in before the rule
        settings.require_2fa_for_admins = True  # type: ignore[attr-defined]
        page = client.get("/explore", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/settings/security"
        api = client.get("/api/v3/user")
        assert api.status_code == 403
        assert "requires administrators to use two-factor" in api.json()["message"]
        # Tokens keep working; the enrolment pages stay reachable.
        token = make_token(boss, ["user"])
        assert client.get("/api/v3/user", headers=auth_header(token)).status_code == 200
        assert "requires administrators" in client.get("/settings/security").text
        enrol_totp(client, clock)
        assert client.get("/api/v3/user").json()["login"] == "boss"
        # And 2FA cannot be turned off again while the rule holds.
        refused = post_form(client, "/settings/security", "/settings/security/disable")
        assert refused.status_code == 422
        assert 'data-testid="totp-enabled"' in client.get("/settings/security").text


OPEN_REDIRECTS = [
    "//evil.com",
    "/\\evil.com",
    "https:evil.com",
    "%2F%2Fevil.com",
    "javascript:alert(1)",
    "https://evil.com/",
    "/\t/evil.com",
]


def test_sudo_next_never_leaves_the_site(signed_in: TestClient, db: Database) -> None:
    client = signed_in
    for target in OPEN_REDIRECTS:
        expire_sudo(db)
        page = client.get("/sudo", params={"next": target})
        assert page.status_code == 200
        assert 'name="next" value="/"' in page.text, target
        granted = client.post(
            "/sudo",
            data={"csrf_token": csrf_from(page.text), "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert granted.status_code == 303
        assert granted.headers["location"] == "/", target
    # Percent-encoded in the address itself: decoded once, to `//evil.com`, and dropped.
    expire_sudo(db)
    raw = client.get("/sudo?next=%2F%2Fevil.com")
    assert 'name="next" value="/"' in raw.text
    client.post("/sudo", data={"csrf_token": csrf_from(raw.text), "password": PASSWORD})
    # Once in sudo mode, /sudo forwards at once: still only on this site.
    for target in OPEN_REDIRECTS:
        forwarded = client.get("/sudo", params={"next": target}, follow_redirects=False)
        assert forwarded.status_code == 303 and forwarded.headers["location"] == "/", target


def test_sudo_codes_are_single_use_and_brute_force_is_throttled(
    signed_in: TestClient, with_totp: tuple[str, list[str]], clock: list[int], db: Database
) -> None:
    client = signed_in
    secret, _ = with_totp
    clock[0] += 1

    def attempt(value: str) -> Response:
        expire_sudo(db)
        token = page_token(client, "/sudo?next=/settings/security")
        return client.post(
            "/sudo",
            data={"csrf_token": token, "code": value, "next": "/settings/security"},
            follow_redirects=False,
        )

    assert attempt(code(secret, clock[0])).status_code == 303
    # The same code again (its step was used), and any code of an earlier step: refused.
    assert attempt(code(secret, clock[0])).status_code == 422
    assert attempt(code(secret, clock[0] - 1)).status_code == 422
    right = code(secret, clock[0] + 1)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(3):
        assert attempt(wrong).status_code == 422
    # Five failures in the window: even the right code is refused until it ends.
    locked = attempt(right)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert not any(grant.expires_at > utcnow() for grant in _sudo_grants(db)), (
        "a throttled attempt entered sudo mode"
    )
