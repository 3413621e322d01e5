"""Notifications in GitHub's shapes: who is told, the inbox, read state, subscriptions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.db.engine import Database
from tests.conftest import auth_header

API = "/api/v3"
REPO = f"{API}/repos/alice/proj"


@pytest.fixture
def users(db: Database) -> dict[str, User]:
    with db.session() as session:
        return {
            name: accounts.create_user(session, name, f"{name}@example.com", None)
            for name in ("alice", "bob", "carol", "dave")
        }


@pytest.fixture
def tokens(users: dict[str, User], make_token: Callable[..., str]) -> dict[str, dict[str, str]]:
    return {name: auth_header(make_token(user)) for name, user in users.items()}


def _inbox(client: TestClient, headers: dict[str, str], query: str = "") -> list[dict]:
    response = client.get(f"{API}/notifications{query}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_who_is_notified_and_the_inbox(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    alice, bob, carol, dave = (tokens[name] for name in ("alice", "bob", "carol", "dave"))
    assert client.post(f"{API}/user/repos", json={"name": "proj"}, headers=alice).status_code == 201
    watched = client.put(f"{REPO}/subscription", json={"subscribed": True}, headers=bob)
    assert watched.status_code == 200
    assert watched.json()["subscribed"] is True and watched.json()["ignored"] is False
    assert watched.json()["repository_url"].endswith("/api/v3/repos/alice/proj")
    assert client.get(f"{REPO}/subscription", headers=bob).json()["subscribed"] is True
    assert client.get(f"{REPO}/subscription", headers=carol).status_code == 404
    client.put(f"{REPO}/subscription", json={"ignored": True}, headers=dave)

    made = client.post(
        f"{REPO}/issues", json={"title": "Crash", "body": "cc @carol @dave"}, headers=alice
    )
    assert made.status_code == 201
    assert _inbox(client, alice) == []  # never about one's own activity
    assert _inbox(client, dave) == []  # ignoring the repository mutes even mentions
    [bob_thread] = _inbox(client, bob)
    assert bob_thread["reason"] == "subscribed" and bob_thread["unread"] is True
    assert bob_thread["subject"] == {
        "title": "Crash",
        "url": bob_thread["repository"]["url"] + "/issues/1",
        "latest_comment_url": bob_thread["repository"]["url"] + "/issues/1",
        "type": "Issue",
    }
    assert bob_thread["repository"]["full_name"] == "alice/proj"
    assert bob_thread["url"].endswith(f"/api/v3/notifications/threads/{bob_thread['id']}")
    [carol_thread] = _inbox(client, carol)
    assert carol_thread["reason"] == "mention"
    assert _inbox(client, bob, "?participating=true") == []

    comment = client.post(f"{REPO}/issues/1/comments", json={"body": "On it"}, headers=carol)
    comment_id = comment.json()["id"]
    [alice_thread] = _inbox(client, alice)
    assert alice_thread["reason"] == "author"
    assert alice_thread["subject"]["latest_comment_url"].endswith(f"/issues/comments/{comment_id}")
    # carol commented: her own comment does not notify her, but she is now a participant.
    assert _inbox(client, carol)[0]["unread"] is True  # the earlier mention is still unread

    thread_id = carol_thread["id"]
    assert (
        client.patch(f"{API}/notifications/threads/{thread_id}", headers=carol).status_code == 205
    )
    assert _inbox(client, carol) == []
    [read] = _inbox(client, carol, "?all=true")
    assert read["unread"] is False and read["last_read_at"]
    # Someone else's thread is not there.
    assert client.get(f"{API}/notifications/threads/{thread_id}", headers=bob).status_code == 404
    assert client.patch(f"{API}/notifications/threads/{thread_id}", headers=bob).status_code == 404

    # Unsubscribing from the thread silences it; the repository watch no longer applies.
    bob_id = bob_thread["id"]
    thread_sub = f"{API}/notifications/threads/{bob_id}/subscription"
    assert client.get(thread_sub, headers=bob).json()["subscribed"] is True
    assert client.delete(thread_sub, headers=bob).status_code == 204
    assert client.get(thread_sub, headers=bob).json()["subscribed"] is False
    assert client.put(f"{API}/notifications", json={}, headers=bob).status_code == 205
    client.post(f"{REPO}/issues/1/comments", json={"body": "Update"}, headers=alice)
    assert _inbox(client, bob) == []
    assert _inbox(client, carol)[0]["reason"] == "mention"
    # Ignoring the thread mutes even a mention.
    ignored = client.put(thread_sub, json={"ignored": True}, headers=bob)
    assert ignored.json()["ignored"] is True and ignored.json()["subscribed"] is False
    client.post(f"{REPO}/issues/1/comments", json={"body": "@bob look"}, headers=alice)
    assert _inbox(client, bob) == []

    assert client.delete(f"{REPO}/subscription", headers=bob).status_code == 204
    assert client.get(f"{REPO}/subscription", headers=bob).status_code == 404
    # Without the notifications or repo scope a token may not read the inbox.
    assert client.get(f"{API}/notifications").status_code == 401
    # Done hides the thread until something new happens on it.
    [alice_thread] = _inbox(client, alice, "?all=true")
    done = client.delete(f"{API}/notifications/threads/{alice_thread['id']}", headers=alice)
    assert done.status_code == 204 and _inbox(client, alice, "?all=true") == []
    client.post(f"{REPO}/issues/1/comments", json={"body": "Again"}, headers=carol)
    assert [t["id"] for t in _inbox(client, alice)] == [alice_thread["id"]]


def test_losing_access_hides_threads(
    client: TestClient,
    db: Database,
    users: dict[str, User],
    tokens: dict[str, dict[str, str]],
    make_token: Callable[..., str],
) -> None:
    alice, carol = tokens["alice"], tokens["carol"]
    client.post(f"{API}/user/repos", json={"name": "proj", "private": True}, headers=alice)
    client.put(f"{REPO}/collaborators/carol", json={"permission": "push"}, headers=alice)
    # bob cannot read the private repository: mentioning him tells him nothing.
    client.post(f"{REPO}/issues", json={"title": "Secret", "body": "@carol @bob"}, headers=alice)
    assert _inbox(client, tokens["bob"]) == []
    [thread] = _inbox(client, carol)
    narrow = auth_header(make_token(users["carol"], ["read:user"]))
    assert client.get(f"{API}/notifications", headers=narrow).status_code == 403
    assert client.delete(f"{REPO}/collaborators/carol", headers=alice).status_code == 204
    assert _inbox(client, carol, "?all=true") == []
    assert (
        client.get(f"{API}/notifications/threads/{thread['id']}", headers=carol).status_code == 404
    )
