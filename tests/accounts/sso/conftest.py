"""Peers and helpers for the sign-in tests.

- OpenID Connect: panva's `oidc-provider` (a certified OpenID Provider) run by Node.js, one
  process for the whole run.
- GitHub and GitLab: small local servers speaking their documented OAuth wire protocol, since
  neither service can run here (`tests/peers/github.py`, `tests/peers/gitlab.py`).

OpenCodeHub itself is driven through the TestClient; `Browser` follows redirects across it and
the peers the way a browser would, keeping each side's cookies. The sudo tests share the sign-in
steps below: `github_sign_up` and `oidc_sign_up` (an account made through a provider, signed in,
outside sudo mode) and `link_from_settings` (a signed-in account links a provider).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts.security.models import SudoGrant
from opencodehub.accounts.sso import providers
from opencodehub.accounts.sso import service as sso
from opencodehub.accounts.sso.models import AuthSource
from opencodehub.config import Settings
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from tests.accounts.security.conftest import audit_events, expire_sudo
from tests.conftest import free_port
from tests.peers import github as github_peer_app
from tests.peers import gitlab as gitlab_peer_app
from tests.peers._oauth import OAuthState
from tests.peers._server import serve_in_thread
from tests.peers.github import github_user
from tests.peers.oidc import OIDCProvider, run_oidc_provider, sign_in_at_provider
from tests.web.forms import post_form

__all__ = ["audit_events", "expire_sudo"]  # shared with the security tests

BASE_URL = "http://och.test"
SUDO_PAGE = "/sudo?next=/settings/password"
OIDC_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Liddell",
        "preferred_username": "alice",
    },
    "dodo": {
        "email": "dodo@example.com",
        "email_verified": False,
        "name": "The Dodo",
        "preferred_username": "dodo",
    },
    "mallory": {
        "email": "bob@example.com",
        "email_verified": True,
        "name": "Not Bob",
        "preferred_username": "mallory",
    },
}


@pytest.fixture
def settings(db: Database, data_dir: Any) -> Settings:
    """The root conftest's settings with a fixed base URL, so the redirect URI registered at
    the providers is the same in every test (the TestClient ignores the host)."""
    return Settings(
        data_dir=data_dir,
        database_url=db.url,
        secret_key="test-secret-key-0123456789abcdef",
        ssh_enabled=False,
        http_port=free_port(),
        ssh_port=free_port(),
        base_url=BASE_URL,
        _env_file=None,
    )


@pytest.fixture(autouse=True)
def _fresh_provider_caches() -> Iterator[None]:
    providers.clear_caches()
    yield
    providers.clear_caches()


@pytest.fixture(scope="session")
def oidc_peer() -> Iterator[OIDCProvider]:
    with run_oidc_provider(
        free_port(), [f"{BASE_URL}/login/sso/oidc/callback"], OIDC_ACCOUNTS
    ) as provider:
        yield provider


class OAuthPeer:
    def __init__(self, state: OAuthState, url: str) -> None:
        self.state = state
        self.url = url

    def reset(self, users: dict[str, dict[str, Any]], current_login: str = "") -> None:
        with self.state.lock:
            self.state.users = users
            self.state.current_login = current_login
            self.state.signed_in_at = 0.0
            self.state.honour_prompt = True
            self.state.forced_logins = 0
            self.state.grants.clear()
            self.state.tokens.clear()
            self.state.token_grants.clear()

    def sign_in_as(self, login: str) -> None:
        self.state.current_login = login
        self.state.signed_in_at = 0.0


@pytest.fixture(scope="session")
def _github_server() -> Iterator[OAuthPeer]:
    state = OAuthState("gh-client-id", "gh-client-secret-value", {})
    with serve_in_thread(github_peer_app.build_app(state)) as url:
        yield OAuthPeer(state, url)


@pytest.fixture
def github_peer(_github_server: OAuthPeer) -> OAuthPeer:
    _github_server.reset({})
    return _github_server


@pytest.fixture(scope="session")
def _gitlab_server() -> Iterator[OAuthPeer]:
    state = OAuthState("gl-client-id", "gl-client-secret-value", {})
    with serve_in_thread(gitlab_peer_app.build_app(state)) as url:
        yield OAuthPeer(state, url)


@pytest.fixture
def gitlab_peer(_gitlab_server: OAuthPeer) -> OAuthPeer:
    _gitlab_server.reset({})
    return _gitlab_server


@pytest.fixture
def add_source(db: Database, settings: Settings) -> Callable[..., AuthSource]:
    def add(**fields: Any) -> AuthSource:
        with db.session() as session:
            return sso.create_source(session, settings.secret, **fields)

    return add


@pytest.fixture
def oidc_source(
    add_source: Callable[..., AuthSource], oidc_peer: OIDCProvider
) -> Callable[..., AuthSource]:
    def add(**fields: Any) -> AuthSource:
        return add_source(
            **{
                "name": "Company SSO",
                "slug": "oidc",
                "kind": "oidc",
                "client_id": oidc_peer.client_id,
                "client_secret": oidc_peer.client_secret,
                "discovery_url": oidc_peer.discovery_url,
                **fields,
            }
        )

    return add


@pytest.fixture
def github_source(
    add_source: Callable[..., AuthSource], github_peer: OAuthPeer
) -> Callable[..., AuthSource]:
    def add(**fields: Any) -> AuthSource:
        return add_source(
            **{
                "name": "GitHub",
                "slug": "github",
                "kind": "github",
                "client_id": github_peer.state.client_id,
                "client_secret": github_peer.state.client_secret,
                "base_url": github_peer.url,
                "api_url": f"{github_peer.url}/api/v3",
                **fields,
            }
        )

    return add


@pytest.fixture
def gitlab_source(
    add_source: Callable[..., AuthSource], gitlab_peer: OAuthPeer
) -> Callable[..., AuthSource]:
    def add(**fields: Any) -> AuthSource:
        return add_source(
            **{
                "name": "GitLab",
                "slug": "gitlab",
                "kind": "gitlab",
                "client_id": gitlab_peer.state.client_id,
                "client_secret": gitlab_peer.state.client_secret,
                "base_url": gitlab_peer.url,
                **fields,
            }
        )

    return add


class Browser:
    """Follows redirects between OpenCodeHub (the TestClient) and the peers (real HTTP)."""

    def __init__(self, client: TestClient, oidc_issuer: str = "") -> None:
        self.client = client
        self.peer = httpx.Client(timeout=10)
        self.oidc_issuer = oidc_issuer
        self.oidc_account = ""

    def close(self) -> None:
        self.peer.close()

    def forget_provider_sessions(self) -> None:
        """Drop the peers' cookies, as if the person signed out at the provider."""
        self.peer.close()
        self.peer = httpx.Client(timeout=10)

    def _is_opencodehub(self, url: str) -> bool:
        return urlsplit(url).netloc in ("", "och.test", "testserver")

    def get(self, url: str, *, stop_at_callback: bool = False) -> httpx.Response:
        for _ in range(15):
            if self._is_opencodehub(url):
                parts = urlsplit(url)
                if stop_at_callback and parts.path.endswith("/callback"):
                    return httpx.Response(200, request=httpx.Request("GET", url))
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                response = self.client.get(path, follow_redirects=False)
            elif self.oidc_issuer and url.startswith(self.oidc_issuer):
                url = sign_in_at_provider(self.peer, url, self.oidc_account)
                continue
            else:
                response = self.peer.get(url, follow_redirects=False)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = str(response.url.join(response.headers["location"]))
        raise AssertionError("too many redirects")

    def callback_url(self, start: str) -> str:
        """Start a sign-in and stop at the provider's redirect back (not yet delivered)."""
        response = self.get(start, stop_at_callback=True)
        return str(response.request.url)

    def sign_in_with(self, slug: str, account: str = "", next_path: str = "") -> httpx.Response:
        self.oidc_account = account
        start = f"/login/sso/{slug}"
        if next_path:
            start += "?" + httpx.QueryParams({"next": next_path}).__str__()
        return self.get(start)


@pytest.fixture
def browser(client: TestClient) -> Iterator[Browser]:
    created: list[Browser] = []

    def make() -> Browser:
        instance = Browser(client)
        created.append(instance)
        return instance

    instance = make()
    yield instance
    for item in created:
        item.close()


@pytest.fixture
def oidc_browser(client: TestClient, oidc_peer: OIDCProvider) -> Iterator[Browser]:
    instance = Browser(client, oidc_peer.issuer)
    yield instance
    instance.close()


# Sudo mode and the sign-ins that lead to it ------------------------------------------------------


def sudo_active(db: Database) -> bool:
    with db.session() as session:
        return any(grant.expires_at > utcnow() for grant in session.scalars(select(SudoGrant)))


def start_sudo(client: TestClient, slug: str) -> httpx.Response:
    """Ask for sudo mode through provider `slug` from the sudo page; its redirect onwards."""
    return post_form(client, SUDO_PAGE, f"/sudo/sso/{slug}", {"next": "/settings/password"})


def verified_github_user(user_id: int, login: str, email: str) -> dict[str, Any]:
    """A GitHub account with one primary, verified address."""
    return github_user(user_id, login, emails=[{"email": email, "primary": True, "verified": True}])


def link_from_settings(client: TestClient, browser: Browser, slug: str) -> None:
    """The signed-in account links provider `slug` from its linked-accounts settings."""
    linked = browser.get(
        post_form(
            client, "/settings/linked-accounts", f"/settings/linked-accounts/link/{slug}"
        ).headers["location"]
    )
    assert "now linked" in linked.text, linked.text


@pytest.fixture
def github_sign_up(
    client: TestClient,
    db: Database,
    github_source: Callable[..., AuthSource],
    github_peer: OAuthPeer,
    browser: Browser,
) -> Callable[..., Browser]:
    """`sign_up(**others)`: `octo` signs up through GitHub (a new account, no password) and is
    signed in, outside sudo mode; `others` are more accounts the GitHub stand-in knows. Gives
    the browser that signed in."""

    def sign_up(**others: dict[str, Any]) -> Browser:
        github_source()
        octo = verified_github_user(5, "octo", "octo@example.com")
        github_peer.reset({"octo": octo, **others}, "octo")
        browser.sign_in_with("github")
        assert client.get("/api/v3/user").json()["login"] == "octo"
        expire_sudo(db)
        return browser

    return sign_up


@pytest.fixture
def oidc_sign_up(
    client: TestClient,
    db: Database,
    oidc_source: Callable[..., AuthSource],
    oidc_browser: Browser,
) -> Browser:
    """`alice` signs up through the OpenID provider (no password) and is signed in, outside
    sudo mode, with the provider's session still open in the browser it gives."""
    oidc_source()
    oidc_browser.sign_in_with("oidc", "alice")
    assert client.get("/api/v3/user").json()["login"] == "alice"
    expire_sudo(db)
    return oidc_browser
