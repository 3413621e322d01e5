"""Commit statuses: GitHub's create, list and combined-status endpoints, and the combined rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import statuses
from opencodehub.repos.models import CommitState, Repository, Visibility
from opencodehub.repos.statuses import NewStatus, combine
from tests.conftest import auth_header
from tests.repos.git_helpers import commit_files, create_repo

API = "/api/v3/repos/alice/project"

STATUS_KEYS = {
    "url",
    "avatar_url",
    "id",
    "node_id",
    "state",
    "description",
    "target_url",
    "context",
    "created_at",
    "updated_at",
    "creator",
}


@pytest.mark.parametrize(
    ("states", "combined"),
    [
        ([], CommitState.PENDING),
        ([CommitState.SUCCESS, CommitState.SUCCESS], CommitState.SUCCESS),
        ([CommitState.SUCCESS, CommitState.PENDING], CommitState.PENDING),
        ([CommitState.PENDING, CommitState.ERROR], CommitState.FAILURE),
        ([CommitState.SUCCESS, CommitState.FAILURE], CommitState.FAILURE),
    ],
)
def test_combined_state_rule(states: list[CommitState], combined: CommitState) -> None:
    assert combine(states) == combined


def test_statuses_api(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice)
    first = commit_files(settings, repo, {"a.txt": b"one\n"})
    sha = commit_files(settings, repo, {"a.txt": b"two\n"})
    headers = auth_header(make_token(alice))

    created = client.post(
        f"{API}/statuses/{sha}",
        json={
            "state": "pending",
            "context": "ci/build",
            "description": "Building",
            "target_url": "https://ci.example.com/1",
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == STATUS_KEYS
    assert body["state"] == "pending"
    assert body["context"] == "ci/build"
    assert body["creator"]["login"] == "alice"
    assert body["url"].endswith(f"/api/v3/repos/alice/project/statuses/{sha}")
    assert created.headers["Location"] == body["url"]

    for state, context in (("success", "ci/build"), ("failure", "lint")):
        response = client.post(
            f"{API}/statuses/{sha}", json={"state": state, "context": context}, headers=headers
        )
        assert response.status_code == 201
    # No context given: GitHub's "default".
    client.post(f"{API}/statuses/{first}", json={"state": "success"}, headers=headers)

    combined = client.get(f"{API}/commits/main/status")
    assert combined.status_code == 200
    data = combined.json()
    assert data["state"] == "failure"
    assert data["sha"] == sha
    assert data["total_count"] == 2
    assert [(s["context"], s["state"]) for s in data["statuses"]] == [
        ("ci/build", "success"),
        ("lint", "failure"),
    ]
    assert "creator" not in data["statuses"][0]
    assert data["repository"]["full_name"] == "alice/project"
    assert data["commit_url"].endswith(f"/commits/{sha}")
    assert data["url"].endswith(f"/commits/{sha}/status")

    listed = client.get(f"{API}/commits/{sha}/statuses", params={"per_page": 2})
    assert listed.status_code == 200
    assert [s["state"] for s in listed.json()] == ["failure", "success"]
    assert 'rel="next"' in listed.headers["Link"]
    legacy = client.get(f"{API}/statuses/{sha}")
    assert [s["state"] for s in legacy.json()] == ["failure", "success", "pending"]

    older = client.get(f"{API}/commits/{first}/status").json()
    assert (older["state"], older["statuses"][0]["context"]) == ("success", "default")
    empty = commit_files(settings, repo, {"b.txt": b"x"}, branch="other")
    assert client.get(f"{API}/commits/{empty}/status").json()["state"] == "pending"

    # Bad input: GitHub's 422s, nothing written.
    bad_state = client.post(f"{API}/statuses/{sha}", json={"state": "done"}, headers=headers)
    assert bad_state.status_code == 422
    assert bad_state.json()["errors"][0]["field"] == "state"
    bad_url = client.post(
        f"{API}/statuses/{sha}",
        json={"state": "success", "target_url": "javascript:alert(1)"},
        headers=headers,
    )
    assert bad_url.status_code == 422
    unknown = client.post(f"{API}/statuses/{'1' * 40}", json={"state": "success"}, headers=headers)
    assert unknown.status_code == 422
    assert "No commit found" in unknown.json()["message"]
    assert (
        client.post(f"{API}/statuses/main", json={"state": "success"}, headers=headers).status_code
        == 422
    )
    assert client.get(f"{API}/commits/nope/status").status_code == 404
    assert len(client.get(f"{API}/commits/{sha}/statuses").json()) == 3

    # Reading is public; writing needs write access (a reader of a public repository: 403).
    bob_headers = auth_header(make_token(bob))
    denied = client.post(f"{API}/statuses/{sha}", json={"state": "success"}, headers=bob_headers)
    assert denied.status_code == 403
    assert client.post(f"{API}/statuses/{sha}", json={"state": "success"}).status_code in (401, 403)


def test_private_repository_statuses_are_not_found_for_others(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice, visibility=Visibility.PRIVATE)
    sha = commit_files(settings, repo, {"a.txt": b"one\n"})
    bob_headers = auth_header(make_token(bob))
    assert client.get(f"{API}/commits/{sha}/status", headers=bob_headers).status_code == 404
    posted = client.post(f"{API}/statuses/{sha}", json={"state": "success"}, headers=bob_headers)
    assert posted.status_code == 404


def test_several_statuses_at_once_keep_their_order_and_set_statuss_checks(
    db: Database, settings: Settings, make_user: Callable[..., User], monkeypatch: Any
) -> None:
    alice = make_user("alice")
    repo = create_repo(db, settings, alice)
    sha = commit_files(settings, repo, {"a.txt": b"one\n"})
    batch = [
        NewStatus(repo.id, sha.upper(), "pending", "ci / a", "Queued", None, alice.id),
        NewStatus(repo.id, sha, "bogus", "ci / b"),
        NewStatus(repo.id, sha, "pending", "ci / b", target_url="ftp://example.com/x"),
        NewStatus(repo.id, sha, "success", "ci / a", "Successful", "https://example.com/1"),
        NewStatus(repo.id, sha, "failure", " ci / b ", None, None, alice.id),
    ]
    with db.session() as session:
        results = statuses.set_statuses(session, batch)
    assert [None if error is None else error.errors[0].field for error in results] == [
        None,
        "state",
        "target_url",
        None,
        None,
    ]
    with db.session() as session:
        repository = session.get(Repository, repo.id)
        assert repository is not None
        rows, _more = statuses.list_statuses(session, repository, sha)
        assert [(s.context, s.state, s.description, s.target_url, s.creator_id) for s in rows] == [
            ("ci / b", CommitState.FAILURE, None, None, alice.id),
            ("ci / a", CommitState.SUCCESS, "Successful", "https://example.com/1", None),
            ("ci / a", CommitState.PENDING, "Queued", None, alice.id),
        ]
        latest = statuses.latest_by_context(session, repository, sha)
        assert [(s.context, s.state) for s in latest] == [
            ("ci / a", CommitState.SUCCESS),
            ("ci / b", CommitState.FAILURE),
        ]

    # Near the per-context limit each status is counted before it goes in, as set_status does.
    monkeypatch.setattr(statuses, "MAX_STATUSES_PER_CONTEXT", 4)
    more = [NewStatus(repo.id, sha, "success", context) for context in ("ci / a", "ci / c")] * 2
    with db.session() as session:
        results = statuses.set_statuses(session, more)
    assert [error is None for error in results] == [True, True, True, True]
    with db.session() as session:
        results = statuses.set_statuses(session, more)
    assert [error is None for error in results] == [False, True, False, True]
    assert results[0] is not None and "maximum number of statuses" in str(results[0].errors)
    with db.session() as session:
        repository = session.get(Repository, repo.id)
        assert repository is not None
        rows, _more = statuses.list_statuses(session, repository, sha)
        contexts = [s.context for s in rows]
        assert (contexts.count("ci / a"), contexts.count("ci / c")) == (4, 4)
