"""Review requests of organization teams: request, list, remove, refuse a team of another
organization (or any team on a user's repository), notify the members, and a member's review
satisfying the team's request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import auth_header
from tests.pulls.conftest import World, commit_on, open_pull
from tests.repos.git_helpers import commit_files

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import OrgMembership, OrgRole, Team, TeamMember, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.notifications.models import NotificationThread
from opencodehub.pulls.models import ReviewRequest
from opencodehub.repos import service as repos
from opencodehub.repos.models import Visibility


@dataclass
class Org:
    world: World
    dev: User  # member of the team "core"
    eve: User  # member of the organization, not of "core"
    dev_headers: dict[str, str]
    eve_headers: dict[str, str]

    @property
    def requested(self) -> str:
        return f"{self.world.pull_url(1)}/requested_reviewers"


def _member(session: Session, org_id: int, user: User, team: Team) -> None:
    session.add(OrgMembership(org_id=org_id, user_id=user.id, role=OrgRole.MEMBER))
    session.add(TeamMember(team_id=team.id, user_id=user.id))


@pytest.fixture
def org(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> Org:
    alice = make_user("alice")
    dev = make_user("dev")
    eve = make_user("eve")
    stranger = make_user("stranger")
    with db.session() as session:
        owner = session.get(User, alice.id)
        assert owner is not None
        octo = accounts.create_organization(session, owner, "octo")
        repo = repos.create_repository(
            session,
            settings,
            Actor(user=owner, method="password"),
            octo,
            "project",
            visibility=Visibility.PRIVATE,
        )
        session.flush()
        core = Team(org_id=octo.id, name="Core", slug="core")
        docs = Team(org_id=octo.id, name="Docs", slug="docs")
        session.add_all([core, docs])
        session.flush()
        _member(session, octo.id, dev, core)
        _member(session, octo.id, eve, docs)
        # Another organization with a team of the same kind and one named like ours.
        stranger_row = session.get(User, stranger.id)
        assert stranger_row is not None
        acme = accounts.create_organization(session, stranger_row, "acme")
        session.add_all(
            [
                Team(org_id=acme.id, name="Ops", slug="ops"),
                Team(org_id=acme.id, name="Core", slug="core-acme"),
            ]
        )
        session.flush()
        session.expunge(repo)
    commit_files(settings, repo, {"README.md": b"# project\n"})
    token = make_token(alice)
    world = World(alice, repo, token, auth_header(token), "/api/v3/repos/octo/project")
    commit_on(settings, repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    return Org(world, dev, eve, auth_header(make_token(dev)), auth_header(make_token(eve)))


def _slugs(teams: list[dict]) -> list[str]:
    return [team["slug"] for team in teams]


def test_request_list_and_remove_team_reviewers(db: Database, client: TestClient, org: Org) -> None:
    world = org.world
    added = client.post(
        org.requested, json={"team_reviewers": ["core", "CORE", "docs"]}, headers=world.headers
    )
    assert added.status_code == 201, added.text
    assert _slugs(added.json()["requested_teams"]) == ["core", "docs"]
    assert added.json()["requested_reviewers"] == []
    team = added.json()["requested_teams"][0]
    assert team["name"] == "Core" and team["url"].endswith("/orgs/octo/teams/core")

    listed = client.get(org.requested, headers=world.headers)
    assert listed.status_code == 200
    assert listed.json()["users"] == []
    assert _slugs(listed.json()["teams"]) == ["core", "docs"]
    pull = client.get(world.pull_url(1), headers=world.headers).json()
    assert _slugs(pull["requested_teams"]) == ["core", "docs"]

    # Requesting again adds nothing; the team's members were told once.
    again = client.post(org.requested, json={"team_reviewers": ["core"]}, headers=world.headers)
    assert _slugs(again.json()["requested_teams"]) == ["core", "docs"]
    with db.session() as session:
        assert len(session.scalars(select(ReviewRequest)).all()) == 2
        threads = session.scalars(
            select(NotificationThread).where(NotificationThread.user_id == org.dev.id)
        ).all()
        assert [t.reason for t in threads] == ["review_requested"]

    removed = client.request(
        "DELETE", org.requested, json={"team_reviewers": ["Core"]}, headers=world.headers
    )
    assert removed.status_code == 200
    assert _slugs(removed.json()["requested_teams"]) == ["docs"]
    assert _slugs(client.get(org.requested, headers=world.headers).json()["teams"]) == ["docs"]


def test_teams_of_other_organizations_are_refused(
    db: Database, client: TestClient, org: Org
) -> None:
    world = org.world
    for slug in ("ops", "core-acme", "acme/ops", "nope", "x" * 300):
        refused = client.post(org.requested, json={"team_reviewers": [slug]}, headers=world.headers)
        assert refused.status_code == 422, slug
    # One bad team refuses the whole request: nothing is written.
    mixed = client.post(
        org.requested, json={"team_reviewers": ["core", "ops"]}, headers=world.headers
    )
    assert mixed.status_code == 422
    with db.session() as session:
        assert session.scalars(select(ReviewRequest)).all() == []
    assert client.get(org.requested, headers=world.headers).json() == {"users": [], "teams": []}


def test_team_reviewers_on_a_user_repository_are_refused(
    client: TestClient, settings: Settings, world: World
) -> None:
    commit_on(settings, world.repo, {"new.txt": b"hello\n"}, branch="feature")
    open_pull(client, world)
    refused = client.post(
        f"{world.pull_url(1)}/requested_reviewers",
        json={"team_reviewers": ["core"]},
        headers=world.headers,
    )
    assert refused.status_code == 422


def test_team_requests_need_rights_and_stay_hidden(
    db: Database,
    client: TestClient,
    org: Org,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    outsider = auth_header(make_token(make_user("outsider")))
    # The repository is private: a stranger learns nothing, not even that it exists.
    assert client.get(org.requested, headers=outsider).status_code == 404
    assert (
        client.post(org.requested, json={"team_reviewers": ["core"]}, headers=outsider).status_code
        == 404
    )
    # A member with read access who did not open the pull request may not request reviews.
    denied = client.post(org.requested, json={"team_reviewers": ["core"]}, headers=org.eve_headers)
    assert denied.status_code == 403
    with db.session() as session:
        assert session.scalars(select(ReviewRequest)).all() == []


def test_a_team_members_review_satisfies_the_team(
    db: Database, client: TestClient, org: Org
) -> None:
    world = org.world
    client.post(
        org.requested, json={"team_reviewers": ["core", "docs"]}, headers=world.headers
    ).raise_for_status()

    # eve is not in "core": her review answers "docs" only.
    reviewed = client.post(
        f"{world.pull_url(1)}/reviews",
        json={"event": "COMMENT", "body": "Docs look fine"},
        headers=org.eve_headers,
    )
    assert reviewed.status_code == 200, reviewed.text
    assert _slugs(client.get(org.requested, headers=world.headers).json()["teams"]) == ["core"]

    # A pending review answers nothing yet; submitting it does.
    pending = client.post(f"{world.pull_url(1)}/reviews", json={}, headers=org.dev_headers)
    assert pending.status_code == 200, pending.text
    assert _slugs(client.get(org.requested, headers=world.headers).json()["teams"]) == ["core"]
    submitted = client.post(
        f"{world.pull_url(1)}/reviews/{pending.json()['id']}/events",
        json={"event": "APPROVE"},
        headers=org.dev_headers,
    )
    assert submitted.status_code == 200, submitted.text
    assert client.get(org.requested, headers=world.headers).json() == {"users": [], "teams": []}
    with db.session() as session:
        assert session.scalars(select(ReviewRequest)).all() == []
