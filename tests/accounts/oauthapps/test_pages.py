"""Registering and managing OAuth apps in the browser, for a user and for an organization."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import OrgRole, User
from opencodehub.accounts.oauthapps.models import OAuthApp, OAuthAppSecret
from opencodehub.accounts.security.models import AuditEvent
from opencodehub.db.engine import Database
from tests.accounts.oauthapps.conftest import RegisteredApp, exchange, get_code
from tests.web.forms import log_in, log_out, post_form

_SECRET_RE = re.compile(r'<code id="new-secret-value">([0-9a-f]{40})</code>')


def test_register_app_secrets_and_org_apps(
    client: TestClient,
    alice: User,
    make_user: Callable[..., User],
    make_app: Callable[..., RegisteredApp],
    db: Database,
) -> None:
    assert "Developer settings" in client.get("/settings/profile").text
    new = "/settings/applications/new"
    form = {
        "name": "CI helper",
        "homepage_url": "https://ci.example",
        "description": "Builds things",
        "callback_urls": "http://ci.example/cb",
    }
    refused = post_form(client, new, new, form)
    assert refused.status_code == 422 and "http is allowed only for localhost" in refused.text
    refused = post_form(client, new, new, {**form, "homepage_url": "javascript:alert(1)"})
    assert refused.status_code == 422
    with db.session() as session:
        assert session.scalar(select(OAuthApp)) is None

    created = post_form(
        client, new, new, {**form, "callback_urls": "https://ci.example/cb\nhttp://localhost:9/cb"}
    )
    assert created.status_code == 303
    page_path = created.headers["location"]
    edit = client.get(page_path)
    with db.session() as session:
        app = session.scalar(select(OAuthApp))
        assert app is not None and app.callback_url_list == [
            "https://ci.example/cb",
            "http://localhost:9/cb",
        ]
        client_id = app.client_id
    assert client_id in edit.text

    # Two secrets at once (rotation), each shown once and stored as a digest only.
    shown = []
    for _ in range(2):
        response = post_form(client, page_path, f"{page_path}/secrets")
        assert response.status_code == 201
        match = _SECRET_RE.search(response.text)
        assert match
        shown.append(match.group(1))
    assert shown[0] not in client.get(page_path).text
    with db.session() as session:
        rows = list(session.scalars(select(OAuthAppSecret)))
        assert len(rows) == 2 and all(row.secret_hash not in shown for row in rows)
        oldest = min(row.id for row in rows)
    deleted = post_form(client, page_path, f"{page_path}/secrets/{oldest}/delete")
    assert deleted.status_code == 303

    updated = post_form(
        client, page_path, page_path, {**form, "name": "CI", "callback_urls": "https://a.example/"}
    )
    assert updated.status_code == 303
    assert "CI" in client.get("/settings/applications").text

    with db.session() as session:
        events = {event.event for event in session.scalars(select(AuditEvent))}
    assert {"oauth_app.create", "oauth_app.secret_created"} <= events

    # An organization's apps: owners manage them, members cannot reach them.
    with db.session() as session:
        owner = accounts.get_user(session, "alice")
        assert owner is not None
        org = accounts.create_organization(session, owner, "acme")
        bob = accounts.create_user(session, "bob", "bob@example.com", "correct horse battery")
        accounts.add_org_member(session, org, bob, OrgRole.MEMBER)
    org_base = "/organizations/acme/settings/applications"
    assert "OAuth apps" in client.get("/orgs/acme/people").text
    created = post_form(
        client,
        f"{org_base}/new",
        f"{org_base}/new",
        form | {"callback_urls": "https://acme.example/cb"},
    )
    assert created.status_code == 303 and created.headers["location"].startswith(org_base + "/")
    org_app_path = created.headers["location"]
    assert "acme.example" in client.get(org_app_path).text
    # The user's own page does not list the organization's app, nor reach it.
    assert client.get("/settings/applications/" + org_app_path.rsplit("/", 1)[1]).status_code == 404

    log_out(client)
    assert log_in(client, "bob", "correct horse battery").status_code == 303
    assert client.get(org_base).status_code in (403, 404)
    assert client.get(org_app_path).status_code in (403, 404)
    assert client.get(page_path).status_code == 404  # alice's app
    # Bob may still authorize the organization's app for his own account.
    org_app = make_app("acme", name="Acme tool")
    token = exchange(client, org_app, code=get_code(client, org_app)).json()
    assert (
        client.get(
            "/api/v3/user", headers={"Authorization": f"token {token['access_token']}"}
        ).json()["login"]
        == "bob"
    )
