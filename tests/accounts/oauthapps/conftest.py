"""Helpers for the OAuth provider tests: a registered app, and a third-party client's steps
(authorize as the signed-in person, exchange the code) driven over HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.accounts.oauthapps import service as oauth
from opencodehub.db.engine import Database
from tests.web.forms import csrf_from, log_in

CALLBACK = "http://127.0.0.1:8765/callback"


@dataclass
class RegisteredApp:
    id: int
    client_id: str
    client_secret: str
    callback: str


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def alice(client: TestClient, make_user: Callable[..., User]) -> User:
    user = make_user("alice")
    assert log_in(client).status_code == 303
    return user


@pytest.fixture
def make_app(db: Database) -> Callable[..., RegisteredApp]:
    def make(
        owner: str = "alice", *, public: bool = False, callback: str = CALLBACK, name: str = "Tool"
    ) -> RegisteredApp:
        with db.session() as session:
            account = accounts.get_account(session, owner)
            assert account is not None
            creator = account
            if account.is_organization:
                creator = accounts.list_org_members(session, account)[0]
            app = oauth.create_app(
                session,
                None,
                creator,
                account,
                name=name,
                homepage_url="https://tool.example",
                callback_urls=[callback],
                public_client=public,
            )
            secret = "" if public else oauth.create_secret(session, None, creator, app)[1]
            return RegisteredApp(app.id, app.client_id, secret, callback)

    return make


def authorize_url(app: RegisteredApp, **params: str) -> str:
    query = {"client_id": app.client_id, "redirect_uri": app.callback, "state": "st4te"}
    query.update(params)
    return "/login/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None})


def consent(client: Any, app: RegisteredApp, approve: bool = True, **params: str) -> Any:
    """Open the authorization URL as the signed-in person and press a consent button."""
    page = client.get(authorize_url(app, **params), follow_redirects=False)
    if page.status_code != 200:
        return page
    assert 'data-testid="consent"' in page.text
    form = {
        "csrf_token": csrf_from(page.text),
        "client_id": app.client_id,
        "redirect_uri": app.callback,
        "state": params.get("state", "st4te"),
        "scope": params.get("scope", ""),
        "code_challenge": params.get("code_challenge", ""),
        "code_challenge_method": params.get("code_challenge_method", ""),
        "authorize": "1" if approve else "0",
    }
    return client.post("/login/oauth/authorize", data=form, follow_redirects=False)


def get_code(client: Any, app: RegisteredApp, **params: str) -> str:
    response = consent(client, app, **params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(app.callback + "?")
    answer = query_of(location)
    assert answer["state"] == params.get("state", "st4te")
    return answer["code"]


def exchange(client: Any, app: RegisteredApp, **data: str) -> Any:
    body = {"client_id": app.client_id, "grant_type": "authorization_code", **data}
    if app.client_secret and "client_secret" not in data:
        body["client_secret"] = app.client_secret
    body = {key: value for key, value in body.items() if value is not None}
    return client.post(
        "/login/oauth/access_token", data=body, headers={"Accept": "application/json"}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
