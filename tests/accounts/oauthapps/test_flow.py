"""The whole OAuth flow as a third-party client drives it: authorize, consent, exchange (with a
client secret and with PKCE), call the API, refresh, revoke; and every bad input refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from opencodehub.accounts.models import User
from opencodehub.accounts.oauthapps.models import OAuthCode, OAuthToken
from opencodehub.accounts.security.models import AuditEvent
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.accounts.oauthapps.conftest import (
    RegisteredApp,
    authorize_url,
    bearer,
    consent,
    exchange,
    get_code,
    pkce_pair,
    query_of,
)
from tests.web.forms import log_in, log_out


def _events(db: Database, event: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def test_flow_consent_exchange_api_refresh_and_replay(
    client: TestClient,
    make_user: Callable[..., User],
    make_app: Callable[..., RegisteredApp],
    db: Database,
) -> None:
    make_user("alice")
    app = make_app()
    verifier, challenge = pkce_pair()
    params = {"scope": "read:user", "code_challenge": challenge, "code_challenge_method": "S256"}

    # Signed out: sent to sign in first, and back to the same authorization afterwards.
    response = client.get(authorize_url(app, **params), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/login/oauth/authorize")
    next_path = parse_qs(response.headers["location"].split("?", 1)[1])["next"][0]
    signed_in = log_in(client, next_path=next_path)
    assert signed_in.headers["location"] == next_path

    page = client.get(next_path)
    assert "Read your profile data" in page.text and "Tool" in page.text

    # A consent POST without the CSRF token issues nothing.
    forged = client.post(
        "/login/oauth/authorize",
        data={"client_id": app.client_id, "redirect_uri": app.callback, "authorize": "1"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    with db.session() as session:
        assert session.scalar(select(OAuthCode)) is None

    code = get_code(client, app, **params)
    token = exchange(client, app, code=code, code_verifier=verifier)
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "bearer" and body["scope"] == "read:user"
    assert body["expires_in"] == 8 * 3600
    assert body["access_token"].startswith("ocho_")
    assert body["refresh_token"].startswith("ochr_")
    with db.session() as session:
        stored = session.scalar(select(OAuthToken))
        assert stored is not None and body["access_token"] not in stored.token_hash

    user = client.get("/api/v3/user", headers=bearer(body["access_token"]))
    assert user.status_code == 200 and user.json()["login"] == "alice"
    assert user.headers["X-OAuth-Scopes"] == "read:user"
    # Only within its scopes: listing SSH keys needs read:public_key.
    keys = client.get("/api/v3/user/keys", headers=bearer(body["access_token"]))
    assert keys.status_code == 403

    # The same or fewer scopes again: no consent screen, straight back with a code.
    again = client.get(authorize_url(app, scope="read:user"), follow_redirects=False)
    assert again.status_code == 302 and "code" in query_of(again.headers["location"])
    # A wider scope asks again.
    wider = client.get(authorize_url(app, scope="user"), follow_redirects=False)
    assert wider.status_code == 200 and 'data-testid="consent"' in wider.text

    # Replaying the first code fails and revokes the token issued from it.
    replay = exchange(client, app, code=code, code_verifier=verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert client.get("/api/v3/user", headers=bearer(body["access_token"])).status_code == 401

    # Refresh rotates; a rotated refresh token coming back ends the whole line.
    code = get_code(client, app, scope="read:user")
    first = exchange(client, app, code=code).json()
    refreshed = client.post(
        "/login/oauth/access_token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": app.client_id,
            "client_secret": app.client_secret,
        },
        headers={"Accept": "application/json"},
    ).json()
    assert refreshed["access_token"] != first["access_token"]
    assert client.get("/api/v3/user", headers=bearer(first["access_token"])).status_code == 401
    assert client.get("/api/v3/user", headers=bearer(refreshed["access_token"])).status_code == 200
    reuse = client.post(
        "/login/oauth/access_token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(app.client_id, app.client_secret),
        headers={"Accept": "application/json"},
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert client.get("/api/v3/user", headers=bearer(refreshed["access_token"])).status_code == 401

    assert _events(db, "oauth.authorize")
    log_out(client)


def test_revocation_endpoints_and_deleted_app(
    client: TestClient, alice: User, make_app: Callable[..., RegisteredApp], db: Database
) -> None:
    app = make_app()
    other = make_app(name="Other")
    basic = (app.client_id, app.client_secret)

    tokens = [exchange(client, app, code=get_code(client, app)).json() for _ in range(3)]
    # Without Accept: application/json the answer is form-encoded, as GitHub's is.
    plain = client.post(
        "/login/oauth/access_token",
        data={"code": get_code(client, app)},
        auth=(app.client_id, app.client_secret),
    )
    assert plain.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(plain.text)["token_type"] == ["bearer"]

    # RFC 7009: another client cannot revoke it (200 all the same, nothing changes).
    foreign = client.post(
        "/login/oauth/revoke",
        data={"token": tokens[0]["access_token"]},
        auth=(other.client_id, other.client_secret),
    )
    assert foreign.status_code == 200
    assert client.get("/api/v3/user", headers=bearer(tokens[0]["access_token"])).status_code == 200
    wrong_secret = client.post(
        "/login/oauth/revoke", data={"token": tokens[0]["access_token"]}, auth=(app.client_id, "x")
    )
    assert wrong_secret.status_code == 401
    revoked = client.post(
        "/login/oauth/revoke", data={"token": tokens[0]["refresh_token"]}, auth=basic
    )
    assert revoked.status_code == 200
    assert client.get("/api/v3/user", headers=bearer(tokens[0]["access_token"])).status_code == 401

    # GitHub's DELETE /applications/{client_id}/token: one token.
    url = f"/api/v3/applications/{app.client_id}/token"
    payload = {"access_token": tokens[1]["access_token"]}
    assert client.request("DELETE", url, json=payload).status_code == 401
    assert (
        client.request("DELETE", url, json=payload, auth=(app.client_id, "bad")).status_code == 404
    )
    assert client.request("DELETE", url, json=payload, auth=basic).status_code == 204
    assert client.get("/api/v3/user", headers=bearer(tokens[1]["access_token"])).status_code == 401
    assert client.get("/api/v3/user", headers=bearer(tokens[2]["access_token"])).status_code == 200
    bogus = client.request("DELETE", url, json={"access_token": "ocho_nope"}, auth=basic)
    assert bogus.status_code == 422

    # DELETE /applications/{client_id}/grant: every token, and consent is asked again.
    grant_url = f"/api/v3/applications/{app.client_id}/grant"
    payload = {"access_token": tokens[2]["access_token"]}
    assert client.request("DELETE", grant_url, json=payload, auth=basic).status_code == 204
    assert client.get("/api/v3/user", headers=bearer(tokens[2]["access_token"])).status_code == 401
    assert client.get(authorize_url(app), follow_redirects=False).status_code == 200
    assert len(_events(db, "oauth.revoke")) == 3

    # Revoking from the person's settings, then a deleted app's tokens stop working.
    token = exchange(client, app, code=get_code(client, app)).json()["access_token"]
    page = client.get("/settings/applications")
    assert 'data-testid="authorization-row"' in page.text
    from tests.web.forms import post_form

    revoke = post_form(
        client, "/settings/applications", f"/settings/connections/applications/{app.id}/revoke"
    )
    assert revoke.status_code == 303
    assert client.get("/api/v3/user", headers=bearer(token)).status_code == 401

    token = exchange(client, other, code=get_code(client, other)).json()["access_token"]
    assert client.get("/api/v3/user", headers=bearer(token)).status_code == 200
    deleted = post_form(
        client, f"/settings/applications/{other.id}", f"/settings/applications/{other.id}/delete"
    )
    assert deleted.status_code == 303
    assert client.get("/api/v3/user", headers=bearer(token)).status_code == 401


def test_bad_authorization_and_token_requests(
    client: TestClient, alice: User, make_app: Callable[..., RegisteredApp], db: Database
) -> None:
    app = make_app()
    public = make_app(public=True, name="Native")
    verifier, challenge = pkce_pair()

    # Never redirected anywhere: unknown client, unregistered redirect URI.
    unknown = client.get(authorize_url(app, client_id="0" * 20), follow_redirects=False)
    assert unknown.status_code == 400 and "no application" in unknown.text
    evil = client.get(
        authorize_url(app, redirect_uri="https://evil.example/cb"), follow_redirects=False
    )
    assert evil.status_code == 400 and "not registered" in evil.text
    prefix = client.get(
        authorize_url(app, redirect_uri=app.callback + "/x"), follow_redirects=False
    )
    assert prefix.status_code == 400

    def error_of(**params: str) -> str:
        response = client.get(authorize_url(app, **params), follow_redirects=False)
        assert response.status_code == 302, response.text
        answer = query_of(response.headers["location"])
        assert "code" not in answer and answer["state"] == "st4te"
        return answer["error"]

    assert error_of(code_challenge=challenge, code_challenge_method="plain") == "invalid_request"
    assert error_of(code_challenge=challenge) == "invalid_request"
    assert error_of(code_challenge="short", code_challenge_method="S256") == "invalid_request"
    assert error_of(scope="repo bogus") == "invalid_scope"
    assert error_of(scope="admin:enterprise") == "invalid_scope"
    assert error_of(response_type="token") == "unsupported_response_type"
    no_pkce = client.get(authorize_url(public), follow_redirects=False)
    assert query_of(no_pkce.headers["location"])["error"] == "invalid_request"

    denied = consent(client, app, approve=False)
    assert query_of(denied.headers["location"])["error"] == "access_denied"

    # Token endpoint.
    def error(response: object) -> str:
        assert response.status_code in (400, 401), response.text  # type: ignore[attr-defined]
        return response.json()["error"]  # type: ignore[attr-defined]

    code = get_code(client, app, code_challenge=challenge, code_challenge_method="S256")
    assert error(exchange(client, app, code=code, client_secret="wrong")) == "invalid_client"
    assert error(exchange(client, app, code=code, client_id="1" * 20)) == "invalid_client"
    # Another client's code, with its own valid secret.
    other = make_app(name="Other")
    assert error(exchange(client, other, code=code, code_verifier=verifier)) == "invalid_grant"
    # A missing verifier burns the code: the right verifier afterwards is too late.
    assert error(exchange(client, app, code=code)) == "invalid_grant"
    assert error(exchange(client, app, code=code, code_verifier=verifier)) == "invalid_grant"

    code = get_code(client, app, code_challenge=challenge, code_challenge_method="S256")
    wrong = pkce_pair()[0]
    assert error(exchange(client, app, code=code, code_verifier=wrong)) == "invalid_grant"

    code = get_code(client, app)
    assert error(exchange(client, app, code=code, redirect_uri="http://127.0.0.1:1/cb")) == (
        "invalid_grant"
    )
    code = get_code(client, app)
    with db.session() as session:
        session.execute(update(OAuthCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert error(exchange(client, app, code=code)) == "invalid_grant"
    assert error(exchange(client, app, grant_type="password", code="x")) == "unsupported_grant_type"

    # A public client proves itself with PKCE alone; a confidential one without PKCE needs
    # its secret.
    code = get_code(client, public, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(client, public, code=code, code_verifier=verifier).status_code == 200
    code = get_code(client, app)
    assert error(exchange(client, app, code=code, client_secret="")) == "invalid_client"
    with db.session() as session:
        assert session.scalar(select(OAuthToken).where(OAuthToken.app_id == app.id)) is None

    # The sign-in page refuses to send anyone off-site after signing in.
    log_out(client)
    assert log_in(client, next_path="//evil.example/x").headers["location"] == "/"
