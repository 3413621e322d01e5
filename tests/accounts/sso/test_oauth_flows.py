"""Sign-in with GitHub and GitLab, against local stand-ins that speak their documented OAuth wire
protocol (no real GitHub or GitLab can run here; see tests/peers/github.py and gitlab.py)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import Email, User
from opencodehub.accounts.sso.models import AuthSource, ExternalIdentity
from opencodehub.db.engine import Database
from tests.accounts.sso.conftest import Browser, OAuthPeer
from tests.conftest import PASSWORD
from tests.peers.github import github_user
from tests.peers.gitlab import gitlab_user
from tests.web.forms import log_in, log_out, post_form


def _signed_in_as(client: TestClient) -> str | None:
    response = client.get("/api/v3/user")
    return response.json()["login"] if response.status_code == 200 else None


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _make_org(db: Database, owner: User, login: str) -> None:
    with db.session() as session:
        creator = session.get(User, owner.id)
        assert creator is not None
        accounts.create_organization(session, creator, login)


def test_github_verified_primary_email_org_requirement_and_auto_join(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    admin = make_user("siteadmin", admin=True)
    _make_org(db, admin, "acme")
    github_source(required_group="Acme-Corp", org_mapping={"acme-corp": "acme"})
    github_peer.reset(
        {
            "octo_cat.dev": github_user(
                583231,
                "octo_cat.dev",
                name="The Octocat",
                emails=[
                    {"email": "old@example.com", "primary": False, "verified": True},
                    {"email": "octocat@example.com", "primary": True, "verified": True},
                ],
                orgs=["acme-corp", "other"],
            )
        },
        "octo_cat.dev",
    )
    start = client.get("/login/sso/github", follow_redirects=False)
    params = parse_qs(urlsplit(start.headers["location"]).query)
    # GitHub's scopes, plus read:org for the organization checks; PKCE S256.
    assert params["scope"] == ["read:user user:email read:org"]
    assert params["code_challenge_method"] == ["S256"]
    assert "nonce" not in params

    landed = browser.get(start.headers["location"])
    assert landed.status_code == 200
    # "octo_cat.dev" is not a valid OpenCodeHub name; it is normalized, not refused.
    assert _signed_in_as(client) == "octo-cat-dev"
    with db.session() as session:
        user = session.scalar(select(User).where(User.lower_username == "octo-cat-dev"))
        assert user is not None
        assert [(e.email, e.is_verified) for e in user.emails] == [("octocat@example.com", True)]
        identity = session.scalar(select(ExternalIdentity))
        assert identity is not None and identity.subject == "583231"
        assert identity.login == "octo_cat.dev"
        org = accounts.get_organization(session, "acme")
        assert org is not None and accounts.get_org_membership(session, org, user) is not None

    # Signed up through GitHub, no password: the only way to sign in cannot be unlinked.
    with db.session() as session:
        identity_id = session.scalars(select(ExternalIdentity.id)).one()
    refused = post_form(
        client, "/settings/linked-accounts", f"/settings/linked-accounts/{identity_id}/unlink"
    )
    assert refused.status_code == 422
    assert "only way to sign in" in refused.text
    assert _count(db, ExternalIdentity) == 1
    # With a password set, it can go.
    with db.session() as session:
        user = session.scalar(select(User).where(User.lower_username == "octo-cat-dev"))
        assert user is not None
        user.password_hash = accounts.hash_password(PASSWORD)
    allowed = post_form(
        client, "/settings/linked-accounts", f"/settings/linked-accounts/{identity_id}/unlink"
    )
    assert allowed.status_code == 303
    assert _count(db, ExternalIdentity) == 0


def test_gitlab_name_conflict_asks_for_another_name_and_replayed_codes_fail(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    gitlab_peer: OAuthPeer,
    gitlab_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    make_user("tanuki")
    gitlab_source(required_group="woodland/foxes")
    gitlab_peer.reset(
        {
            "tanuki": gitlab_user(
                42, "tanuki", email="fox@example.org", name="Tanuki", groups=["woodland/foxes"]
            )
        },
        "tanuki",
    )
    first = urlsplit(browser.callback_url("/login/sso/gitlab"))
    page = browser.get(f"{first.path}?{first.query}")
    assert str(page.request.url).endswith("/login/sso/-/continue")
    assert 'data-testid="sso-name-taken"' in page.text
    assert 'value="tanuki-1"' in page.text  # a free suggestion
    assert _count(db, User) == 1

    taken = post_form(
        client, "/login/sso/-/continue", "/login/sso/-/continue/signup", {"username": "tanuki"}
    )
    assert taken.status_code == 422
    assert "already taken" in taken.text
    reserved = post_form(
        client, "/login/sso/-/continue", "/login/sso/-/continue/signup", {"username": "admin"}
    )
    assert reserved.status_code == 422
    created = post_form(
        client, "/login/sso/-/continue", "/login/sso/-/continue/signup", {"username": "fox"}
    )
    assert created.status_code == 303
    assert _signed_in_as(client) == "fox"
    with db.session() as session:
        email = session.scalar(select(Email).where(Email.lower_email == "fox@example.org"))
        assert email is not None and email.is_verified
    # The pending sign-in is used up.
    assert client.get("/login/sso/-/continue").status_code == 400
    log_out(client)

    # GitLab refuses a code it already redeemed (invalid_grant); OpenCodeHub says so.
    used_code = parse_qs(first.query)["code"][0]
    second = urlsplit(browser.callback_url("/login/sso/gitlab"))
    state = parse_qs(second.query)["state"][0]
    replay = client.get(f"{second.path}?code={used_code}&state={state}")
    assert replay.status_code == 400
    assert "refused the authorization code" in replay.text
    assert _signed_in_as(client) is None


def test_linked_accounts_settings_link_and_unlink(
    client: TestClient,
    db: Database,
    make_user: Callable[..., User],
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    make_user("dana")
    make_user("eve")
    github_source()
    github_peer.reset(
        {
            "dana-gh": github_user(
                11,
                "dana-gh",
                emails=[{"email": "dana@elsewhere.example", "primary": True, "verified": True}],
            )
        },
        "dana-gh",
    )
    # Linking needs a signed-in user and a CSRF token.
    anonymous = client.post("/settings/linked-accounts/link/github", follow_redirects=False)
    assert anonymous.status_code == 403
    log_in(client, "dana")
    page = client.get("/settings/linked-accounts")
    assert page.status_code == 200
    assert "No linked accounts." in page.text
    no_csrf = client.post("/settings/linked-accounts/link/github", follow_redirects=False)
    assert no_csrf.status_code == 403

    start = post_form(client, "/settings/linked-accounts", "/settings/linked-accounts/link/github")
    assert start.status_code == 303
    done = browser.get(start.headers["location"])
    assert str(done.request.url).endswith("/settings/linked-accounts")
    assert 'data-testid="identity-row"' in done.text and "dana-gh" in done.text
    with db.session() as session:
        identity = session.scalar(select(ExternalIdentity))
        assert identity is not None
        owner = session.get(User, identity.user_id)
        assert owner is not None and owner.username == "dana"
        identity_id = identity.id
    log_out(client)

    # The same GitHub account cannot be linked to a second OpenCodeHub account.
    log_in(client, "eve")
    start = post_form(client, "/settings/linked-accounts", "/settings/linked-accounts/link/github")
    conflict = browser.get(start.headers["location"])
    assert conflict.status_code == 409
    assert "already linked to another OpenCodeHub account" in conflict.text
    # Nor can eve unlink dana's identity.
    foreign = post_form(
        client, "/settings/linked-accounts", f"/settings/linked-accounts/{identity_id}/unlink"
    )
    assert foreign.status_code == 404
    log_out(client)

    # Signing in with GitHub now signs dana in.
    browser.sign_in_with("github")
    assert _signed_in_as(client) == "dana"
    unlinked = post_form(
        client, "/settings/linked-accounts", f"/settings/linked-accounts/{identity_id}/unlink"
    )
    assert unlinked.status_code == 303
    assert _count(db, ExternalIdentity) == 0


def test_restrictions_and_unverified_emails_create_nothing(
    client: TestClient,
    db: Database,
    github_peer: OAuthPeer,
    github_source: Callable[..., AuthSource],
    gitlab_peer: OAuthPeer,
    gitlab_source: Callable[..., AuthSource],
    browser: Browser,
) -> None:
    source = github_source(required_group="acme-corp")
    github_peer.reset(
        {
            "outsider": github_user(
                7,
                "outsider",
                emails=[{"email": "outsider@example.com", "primary": True, "verified": True}],
                orgs=["elsewhere"],
            ),
            "unverified": github_user(
                8,
                "unverified",
                emails=[
                    {"email": "unverified@example.com", "primary": True, "verified": False},
                    {"email": "secondary@example.com", "primary": False, "verified": True},
                ],
                orgs=["acme-corp"],
            ),
        },
        "outsider",
    )
    refused = browser.sign_in_with("github")
    assert refused.status_code == 403
    assert "Only members of the acme-corp organization" in refused.text

    github_peer.sign_in_as("unverified")
    page = browser.sign_in_with("github")
    assert str(page.request.url).endswith("/login/sso/-/continue")
    assert "did not confirm an email address" in page.text
    assert _count(db, User) == 0
    assert _count(db, ExternalIdentity) == 0

    # Domain restriction: only verified addresses at the listed domains.
    with db.session() as session:
        stored = session.get(AuthSource, source.id)
        assert stored is not None
        stored.required_group = ""
        stored.allowed_domains = "corp.example"
    github_peer.sign_in_as("outsider")
    refused = browser.sign_in_with("github")
    assert refused.status_code == 403
    assert "limited to verified email addresses at corp.example" in refused.text
    assert _count(db, User) == 0

    # GitLab: an email without `confirmed_at` is not verified.
    gitlab_source()
    gitlab_peer.reset(
        {"newbie": gitlab_user(9, "newbie", email="newbie@example.org", confirmed=False)}, "newbie"
    )
    page = browser.sign_in_with("gitlab")
    assert "did not confirm an email address" in page.text
    assert _count(db, User) == 0
    assert _count(db, Email) == 0
