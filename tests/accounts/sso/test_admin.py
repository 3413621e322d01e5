"""Site administration of sign-in sources: REST API, admin pages and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from opencodehub import config
from opencodehub.accounts.models import User
from opencodehub.accounts.sso import service as sso
from opencodehub.accounts.sso.models import AuthSource
from opencodehub.cli import app as cli_app
from opencodehub.core.crypto import decrypt
from opencodehub.db.engine import Database
from tests.conftest import auth_header
from tests.web.forms import log_in, post_form

OIDC_BODY = {
    "name": "Company SSO",
    "kind": "oidc",
    "client_id": "och-client",
    "client_secret": "very-secret-value",
    "discovery_url": "https://id.example.com/.well-known/openid-configuration",
    "allowed_domains": ["Example.com"],
}


def test_rest_api_crud_for_site_admins_only(
    client: TestClient,
    db: Database,
    settings: config.Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    admin = make_user("ada", admin=True)
    regular = make_user("linus")
    admin_headers = auth_header(make_token(admin, ["admin:enterprise"]))
    path = "/api/v3/admin/auth-sources"

    assert client.get(path).status_code == 401
    denied = client.post(path, json=OIDC_BODY, headers=auth_header(make_token(regular)))
    assert denied.status_code == 403
    narrow = client.get(path, headers=auth_header(make_token(admin, ["repo"])))
    assert narrow.status_code == 403
    assert narrow.headers["X-Accepted-OAuth-Scopes"] == "admin:enterprise"

    created = client.post(path, json=OIDC_BODY, headers=admin_headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["slug"] == "company-sso"
    assert body["allowed_domains"] == ["example.com"]
    assert body["client_secret_set"] is True
    assert "very-secret-value" not in created.text
    with db.session() as session:
        stored = session.scalars(select(AuthSource)).one()
        assert "very-secret-value" not in stored.client_secret_encrypted
        assert decrypt(settings.secret, stored.client_secret_encrypted) == "very-secret-value"

    source_path = f"{path}/{body['id']}"
    patched = client.patch(
        source_path, json={"enabled": False, "scopes": "openid email"}, headers=admin_headers
    )
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False and patched.json()["scopes"] == "openid email"
    assert client.get(path, headers=admin_headers).json()[0]["enabled"] is False

    for bad, field in [
        ({**OIDC_BODY, "slug": "x0", "discovery_url": ""}, "discovery_url"),
        ({**OIDC_BODY, "slug": "Bad Slug!"}, "slug"),
        ({**OIDC_BODY, "slug": "company-sso"}, "slug"),
        ({**OIDC_BODY, "slug": "x1", "discovery_url": "javascript:alert(1)"}, "discovery_url"),
        ({**OIDC_BODY, "slug": "x2", "allowed_domains": ["not a domain"]}, "allowed_domains"),
        ({**OIDC_BODY, "slug": "x3", "org_mapping": {"team": "no-such-org"}}, "org_mapping"),
    ]:
        refused = client.post(path, json=bad, headers=admin_headers)
        assert refused.status_code == 422, bad
        assert refused.json()["errors"][0]["field"] == field
    wrong_kind = client.post(path, json={**OIDC_BODY, "kind": "ldap"}, headers=admin_headers)
    assert wrong_kind.status_code == 422

    assert client.delete(source_path, headers=admin_headers).status_code == 204
    assert client.get(source_path, headers=admin_headers).status_code == 404
    assert client.get(path, headers=admin_headers).json() == []


def test_admin_pages_need_a_site_admin_and_csrf(
    client: TestClient, db: Database, make_user: Callable[..., User]
) -> None:
    make_user("ada", admin=True)
    make_user("linus")
    page = "/-/admin/auth-sources"
    assert client.get(page, follow_redirects=False).status_code == 303  # to the sign-in page
    log_in(client, "linus")
    assert client.get(page).status_code == 404
    client.cookies.clear()

    log_in(client, "ada")
    assert client.get(page).status_code == 200
    no_csrf = client.post(page, data={"name": "GitHub"}, follow_redirects=False)
    assert no_csrf.status_code == 403
    form = {
        "name": "GitHub",
        "kind": "github",
        "client_id": "gh-id",
        "client_secret": "gh-secret",
        "enabled": "on",
        "org_mapping": "",
    }
    invalid = post_form(client, page, page, {**form, "base_url": "ftp://nope"})
    assert invalid.status_code == 422
    assert "must be an http:// or https:// URL" in invalid.text
    created = post_form(client, page, page, form)
    assert created.status_code == 303
    listing = client.get(page)
    assert "/login/sso/github" in listing.text
    with db.session() as session:
        source = session.scalars(select(AuthSource)).one()
        source_id = source.id
        old_secret = source.client_secret_encrypted
    # Saving with an empty secret keeps the stored one.
    saved = post_form(
        client, page, f"{page}/{source_id}", {**form, "client_secret": "", "enabled": ""}
    )
    assert saved.status_code == 303
    with db.session() as session:
        source = session.get(AuthSource, source_id)
        assert source is not None and not source.enabled
        assert source.client_secret_encrypted == old_secret
    removed = post_form(client, page, f"{page}/{source_id}/delete")
    assert removed.status_code == 303
    with db.session() as session:
        assert session.scalars(select(AuthSource)).all() == []


@pytest.fixture
def cli_env(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The CLI against this engine's test database (its tables already exist)."""
    for key, value in {
        "OCH_DATA_DIR": str(tmp_path / "data"),
        "OCH_DATABASE_URL": db.url,
        "OCH_SECRET_KEY": "cli-secret-value",
        "OCH_CONFIG_FILE": str(tmp_path / "absent.toml"),
    }.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()
    yield db
    config.get_settings.cache_clear()


def test_cli_add_list_remove(cli_env: Database) -> None:
    runner = CliRunner()
    added = runner.invoke(
        cli_app,
        [
            "admin", "auth-source", "add",
            "--name", "Corp SSO",
            "--kind", "oidc",
            "--client-id", "corp-client",
            "--client-secret", "corp-secret",
            "--discovery-url", "https://id.corp.example/.well-known/openid-configuration",
            "--allowed-domains", "corp.example",
        ],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "/login/sso/corp-sso/callback" in added.output
    listed = runner.invoke(cli_app, ["admin", "auth-source", "list"])
    assert listed.exit_code == 0
    assert "corp-sso" in listed.output and "corp-client" in listed.output
    assert "corp-secret" not in listed.output
    with cli_env.session() as session:
        source = sso.get_source(session, "corp-sso")
        assert decrypt(b"cli-secret-value", source.client_secret_encrypted) == "corp-secret"

    missing = runner.invoke(
        cli_app,
        ["admin", "auth-source", "add", "--name", "Bad", "--kind", "oidc",
         "--client-id", "x", "--client-secret", "y"],
    )  # fmt: skip
    assert missing.exit_code == 1
    assert "discovery_url" in missing.output

    assert runner.invoke(cli_app, ["admin", "auth-source", "remove", "corp-sso"]).exit_code == 0
    gone = runner.invoke(cli_app, ["admin", "auth-source", "remove", "corp-sso"])
    assert gone.exit_code == 1
    assert "no sign-in source" in gone.output
