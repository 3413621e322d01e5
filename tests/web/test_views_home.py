"""The signed-in dashboard: the user's repositories and organizations, and recent pushes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import OrgRole, Permission, User
from opencodehub.config import Settings
from opencodehub.core.time import utcnow
from opencodehub.db.engine import Database
from opencodehub.repos import service as repos
from opencodehub.repos.models import PushRecord, Visibility
from tests.web.forms import log_in


def make_repo(
    db: Database,
    settings: Settings,
    creator: User,
    owner: str,
    name: str,
    visibility: Visibility = Visibility.PUBLIC,
    description: str = "",
) -> int:
    with db.session() as session:
        actor = Actor(user=session.get(User, creator.id), method="session")
        account = accounts.get_account(session, owner)
        assert account is not None
        repo = repos.create_repository(
            session, settings, actor, account, name, visibility=visibility, description=description
        )
        return repo.id


def record_push(db: Database, repository_id: int, pusher: User | None, ref: str) -> None:
    with db.session() as session:
        session.add(
            PushRecord(
                repository_id=repository_id,
                pusher_id=pusher.id if pusher else None,
                ref=ref,
                old_sha="0" * 40,
                new_sha="ab" * 20,
                forced=False,
                pushed_at=utcnow(),
            )
        )


@pytest.fixture
def people(db: Database, make_user: Callable[..., User]) -> dict[str, User]:
    return {name: make_user(name) for name in ("alice", "bob", "carol")}


def test_landing_page_for_visitors(client: TestClient, db: Database) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "Your code, your server." in page.text
    assert 'href="/explore"' in page.text


def test_dashboard_lists_owned_collaborator_and_org_repositories(
    client: TestClient, db: Database, settings: Settings, people: dict[str, User]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    make_repo(db, settings, alice, "alice", "mine", Visibility.PRIVATE)
    shared = make_repo(db, settings, bob, "bob", "shared", Visibility.PRIVATE)
    make_repo(db, settings, bob, "bob", "bobs-secret", Visibility.PRIVATE)
    make_repo(db, settings, carol, "carol", "public-stranger")
    with db.session() as session:
        org = accounts.create_organization(session, session.get(User, bob.id), "acme")
        accounts.add_org_member(session, org, session.get(User, alice.id), OrgRole.MEMBER)
        repo = repos.get_by_id_for(session, Actor(user=session.get(User, bob.id)), shared)
        repos.add_collaborator(
            session,
            Actor(user=session.get(User, bob.id)),
            repo,
            session.get(User, alice.id),
            Permission.WRITE,
        )
    make_repo(db, settings, bob, "acme", "org-tool", Visibility.PRIVATE)

    log_in(client)
    page = client.get("/")
    assert page.status_code == 200
    listed = page.text.split('data-testid="dashboard-repositories"')[1].split("</ul>")[0]
    for name in ("alice/<strong>mine", "bob/<strong>shared", "acme/<strong>org-tool"):
        assert name in listed
    assert "bobs-secret" not in page.text
    assert "public-stranger" not in listed
    organizations = page.text.split('data-testid="dashboard-organizations"')[1].split("</ul>")[0]
    assert 'href="/orgs/acme/people"' in organizations
    assert 'href="/alice"' in page.text  # the profile link


def test_dashboard_shows_recent_pushes_the_user_may_read(
    client: TestClient, db: Database, settings: Settings, people: dict[str, User]
) -> None:
    alice, bob = people["alice"], people["bob"]
    mine = make_repo(db, settings, alice, "alice", "mine")
    secret = make_repo(db, settings, bob, "bob", "secret", Visibility.PRIVATE)
    record_push(db, mine, alice, "refs/heads/feature-x")
    record_push(db, secret, bob, "refs/heads/hidden-branch")
    record_push(db, mine, None, "refs/tags/v1.0")
    log_in(client)
    page = client.get("/")
    assert page.text.count('data-testid="push-row"') == 2
    assert "feature-x" in page.text
    assert "v1.0" in page.text and "created tag" in page.text
    assert "hidden-branch" not in page.text and "bob/secret" not in page.text


def test_empty_dashboard(client: TestClient, db: Database, people: dict[str, User]) -> None:
    log_in(client)
    page = client.get("/")
    assert "You have no repositories yet." in page.text
    assert "No pushes yet" in page.text
    assert 'href="/new"' in page.text


def test_user_menu_links_to_the_profile(
    client: TestClient, db: Database, people: dict[str, User]
) -> None:
    log_in(client)
    page = client.get("/")
    assert '<a href="/alice" role="menuitem">Your profile</a>' in page.text
    assert '<a href="/new" role="menuitem">New repository</a>' in page.text
