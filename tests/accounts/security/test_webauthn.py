"""Security keys: registration and assertion against a software authenticator, a real run of
the WebAuthn protocol through the server's endpoints."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts.security import webauthn as keys
from opencodehub.accounts.security.models import AuditEvent, WebAuthnCredential
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from tests.accounts.security.authenticator import SoftAuthenticator
from tests.accounts.security.conftest import expire_sudo
from tests.web.forms import csrf_from, log_in, page_token, post_form


def _authenticator(settings: Settings) -> SoftAuthenticator:
    rp_id, origin = keys.relying_party(settings)
    return SoftAuthenticator(rp_id=rp_id, origin=origin)


def _register(client: TestClient, device: SoftAuthenticator, name: str = "YubiKey") -> dict:
    token = page_token(client, "/settings/security")
    headers = {"X-CSRF-Token": token}
    options = client.post("/settings/security/keys/options", headers=headers)
    assert options.status_code == 200, options.text
    body = options.json()
    assert body["rp"]["id"] == device.rp_id and body["attestation"] == "none"
    return client.post(
        "/settings/security/keys",
        json={"name": name, "credential": device.attest(body)},
        headers=headers,
    ).json() | {"_options": body}


def _challenge(client: TestClient) -> tuple[dict, str]:
    page = client.get("/login/two-factor")
    assert page.status_code == 200 and "Use a security key" in page.text
    token = csrf_from(page.text)
    options = client.post("/login/two-factor/webauthn/options", headers={"X-CSRF-Token": token})
    assert options.status_code == 200, options.text
    return options.json(), token


def test_register_and_sign_in_with_a_security_key(
    signed_in: TestClient, settings: Settings, db: Database
) -> None:
    client = signed_in
    device = _authenticator(settings)
    registered = _register(client, device)
    assert registered["name"] == "YubiKey" and len(registered["recovery_codes"]) == 10
    with db.session() as session:
        stored = session.scalar(select(WebAuthnCredential))
        assert stored is not None and stored.transports == "usb" and stored.sign_count == 0
        events = [event.event for event in session.scalars(select(AuditEvent))]
        assert "security_key.added" in events and "two_factor.enabled" in events
    assert 'data-testid="security-key"' in client.get("/settings/security").text
    # The same authenticator cannot be registered twice.
    again = _register(client, device, "Again")
    assert "already registered" in again["message"] or "credential" in again["message"]

    client.cookies.clear()
    assert log_in(client, "alice").headers["location"] == "/login/two-factor"
    options, token = _challenge(client)
    done = client.post(
        "/login/two-factor/webauthn", json=device.assert_(options), headers={"X-CSRF-Token": token}
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"location": "/"}
    assert client.get("/api/v3/user").json()["login"] == "alice"
    with db.session() as session:
        stored = session.scalar(select(WebAuthnCredential))
        assert stored is not None and stored.sign_count == 1 and stored.last_used_at is not None


def test_bad_assertions_are_refused(
    signed_in: TestClient, settings: Settings, db: Database
) -> None:
    client = signed_in
    device = _authenticator(settings)
    _register(client, device)
    client.cookies.clear()
    log_in(client, "alice")

    def attempt(**kwargs: object) -> int:
        options, token = _challenge(client)
        return client.post(
            "/login/two-factor/webauthn",
            json=device.assert_(options, **kwargs),  # type: ignore[arg-type]
            headers={"X-CSRF-Token": token},
        ).status_code

    assert attempt(tamper=True) == 422  # wrong signature
    assert attempt(count=5) == 200
    client.cookies.clear()
    log_in(client, "alice")
    # A counter that went backwards (or stood still) means a cloned key.
    assert attempt(count=5) == 422
    assert attempt(count=3) == 422
    # A challenge is used once: replaying an old, valid response fails.
    options, token = _challenge(client)
    response = device.assert_(options, count=9)
    first = client.post(
        "/login/two-factor/webauthn", json=response, headers={"X-CSRF-Token": token}
    )
    assert first.status_code == 200
    client.cookies.clear()
    log_in(client, "alice")
    _, token = _challenge(client)
    replay = client.post(
        "/login/two-factor/webauthn", json=response, headers={"X-CSRF-Token": token}
    )
    assert replay.status_code == 422
    # Garbage is refused cleanly.
    _, token = _challenge(client)
    for junk in ({}, {"id": "x" * 5000}, {"rawId": device.attest({"challenge": "AA"})["rawId"]}):
        assert (
            client.post(
                "/login/two-factor/webauthn", json=junk, headers={"X-CSRF-Token": token}
            ).status_code
            == 422
        )


def test_registration_with_wrong_origin_or_challenge_is_refused(
    signed_in: TestClient, settings: Settings, db: Database
) -> None:
    client = signed_in
    device = _authenticator(settings)
    token = page_token(client, "/settings/security")
    headers = {"X-CSRF-Token": token}
    options = client.post("/settings/security/keys/options", headers=headers).json()
    evil = device.attest(options, origin="https://evil.example")
    refused = client.post(
        "/settings/security/keys", json={"name": "k", "credential": evil}, headers=headers
    )
    assert refused.status_code == 422
    # The challenge was consumed by that attempt: a correct response to it now fails too.
    stale = client.post(
        "/settings/security/keys",
        json={"name": "k", "credential": device.attest(options)},
        headers=headers,
    )
    assert stale.status_code == 422 and "expired" in stale.json()["message"]
    options = client.post("/settings/security/keys/options", headers=headers).json()
    wrong_rp = device.attest(options, rp_id="evil.example")
    assert (
        client.post(
            "/settings/security/keys", json={"name": "k", "credential": wrong_rp}, headers=headers
        ).status_code
        == 422
    )
    no_csrf = client.post("/settings/security/keys/options")
    assert no_csrf.status_code == 403
    with db.session() as session:
        assert session.scalar(select(WebAuthnCredential)) is None


def test_remove_key_needs_sudo_and_sudo_by_security_key(
    signed_in: TestClient, settings: Settings, db: Database
) -> None:
    client = signed_in
    device = _authenticator(settings)
    _register(client, device)
    with db.session() as session:
        key_id = session.scalar(select(WebAuthnCredential.id))
    expire_sudo(db)
    blocked = post_form(client, "/settings/security", f"/settings/security/keys/{key_id}/delete")
    assert blocked.status_code == 303 and "/sudo" in blocked.headers["location"]

    page = client.get("/sudo?next=/settings/security")
    assert "Use a security key" in page.text
    token = csrf_from(page.text)
    options = client.post("/sudo/webauthn/options", headers={"X-CSRF-Token": token}).json()
    granted = client.post(
        "/sudo/webauthn", json=device.assert_(options), headers={"X-CSRF-Token": token}
    )
    assert granted.status_code == 200

    removed = post_form(client, "/settings/security", f"/settings/security/keys/{key_id}/delete")
    assert removed.status_code == 303
    with db.session() as session:
        events = [event.event for event in session.scalars(select(AuditEvent))]
    assert "security_key.removed" in events and "two_factor.disabled" in events
    client.cookies.clear()
    # No second factor left: a password alone signs in again.
    assert log_in(client, "alice").headers["location"] == "/"


def test_the_webauthn_script_is_a_versioned_static_asset(
    signed_in: TestClient, db: Database
) -> None:
    client = signed_in
    page = client.get("/settings/security")
    match = re.search(r'<script src="(/static/webauthn\.js\?v=[^"]+)" defer>', page.text)
    assert match, "the security page does not load the script from /static/"
    script = client.get(match.group(1))
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "navigator.credentials" in script.text
    expire_sudo(db)
    assert match.group(1) in client.get("/sudo?next=/").text
    assert client.get("/-/security/webauthn.js").status_code == 404
