"""The documented audit events and their descriptions, the site-admin menu, and sudo mode on the
sign-in sources' admin pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

import opencodehub
from opencodehub.accounts.models import User
from opencodehub.accounts.security import audit
from opencodehub.accounts.sso.models import AuthSource
from opencodehub.db.engine import Database
from tests.accounts.security.conftest import expire_sudo
from tests.conftest import PASSWORD
from tests.web.forms import log_in, post_form

_RECORDED = re.compile(r'audit\.record\(\s*[^()]*?"([a-z_]+\.[a-z_]+)"', re.S)
SOURCE_FORM = {
    "name": "Company SSO",
    "kind": "oidc",
    "client_id": "och-client",
    "client_secret": "very-secret-value",
    "discovery_url": "https://id.example.com/.well-known/openid-configuration",
    "enabled": "on",
}


def test_every_recorded_event_is_documented_and_described() -> None:
    # The account domains' events; other domains may record their own, shown by name.
    package = Path(opencodehub.__file__).parent / "accounts"
    recorded = {
        name
        for path in package.rglob("*.py")
        for name in _RECORDED.findall(path.read_text(encoding="utf-8"))
    }
    expected = {
        "oauth.authorize",
        "oauth.revoke",
        "oauth_app.create",
        "oauth_app.secret_created",
        "oauth_app.delete",
        "sso.sign_in",
        "sso.sign_in_failed",
        "sso.signup",
        "sso.link",
        "sso.unlink",
        "user.password_set",
    }
    assert expected <= recorded
    assert recorded <= set(audit.EVENTS), recorded - set(audit.EVENTS)
    assert len(set(audit.EVENTS)) == len(audit.EVENTS)
    for name in audit.EVENTS:
        description = audit.describe(name)
        assert description and description != name and description[0].isupper()
    assert audit.describe("oauth.authorize") == "Authorized an OAuth app"
    assert audit.describe("something.else") == "something.else"


def _count_sources(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(AuthSource)) or 0


def test_site_admin_menu_log_descriptions_and_sudo_for_sign_in_sources(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    admin = make_user("ada", admin=True)
    make_user("linus")
    with db.session() as session:
        owner = session.get(User, admin.id)
        audit.record(session, owner, "oauth.authorize", None, client_id="Iv1.abc", scopes="repo")

    log_in(client, "linus")
    home = client.get("/")
    assert 'data-testid="site-admin-menu"' not in home.text
    assert 'href="/-/admin/auth-sources"' not in home.text
    # Someone else finds nothing there, in sudo mode or not: no detour through /sudo.
    assert post_form(client, "/", "/-/admin/auth-sources", SOURCE_FORM).status_code == 404
    expire_sudo(db)
    assert post_form(client, "/", "/-/admin/auth-sources", SOURCE_FORM).status_code == 404
    own_log = client.get("/settings/security-log")
    assert 'data-testid="audit-description">Signed in<' in own_log.text
    client.cookies.clear()

    log_in(client, "ada")
    home = client.get("/")
    assert 'data-testid="site-admin-menu"' in home.text
    assert 'href="/-/admin/auth-sources"' in home.text
    assert 'href="/-/admin/security-log"' in home.text
    log_page = client.get("/-/admin/security-log")
    assert 'data-testid="audit-description">Authorized an OAuth app<' in log_page.text
    assert ">Registered an OAuth app (oauth_app.create)</option>" in log_page.text
    filtered = client.get("/-/admin/security-log?event=oauth.authorize")
    assert filtered.text.count('data-testid="audit-event"') == 1

    # Just signed in: sudo mode. Creating works.
    created = post_form(client, "/-/admin/auth-sources", "/-/admin/auth-sources", SOURCE_FORM)
    assert created.status_code == 303
    assert _count_sources(db) == 1
    with db.session() as session:
        source_id = session.scalars(select(AuthSource.id)).one()

    expire_sudo(db)
    page = "/-/admin/auth-sources"
    assert client.get(page).status_code == 200  # reading needs no sudo mode
    for action, data in [
        (page, {**SOURCE_FORM, "slug": "second"}),
        (f"{page}/{source_id}", {**SOURCE_FORM, "name": "Renamed"}),
        (f"{page}/{source_id}/delete", {}),
    ]:
        refused = post_form(client, page, action, data)
        assert refused.status_code == 303, action
        assert "/sudo" in refused.headers["location"]
    with db.session() as session:
        assert [source.name for source in session.scalars(select(AuthSource))] == ["Company SSO"]

    confirmed = post_form(client, "/sudo", "/sudo", {"password": PASSWORD, "next": page})
    assert confirmed.status_code == 303
    assert post_form(client, page, f"{page}/{source_id}/delete").status_code == 303
    assert _count_sources(db) == 0
