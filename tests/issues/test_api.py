"""The issues REST API in GitHub's shapes, with the bad inputs an attacker would send."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import User
from opencodehub.db.engine import Database
from opencodehub.issues import service
from opencodehub.repos.models import Repository
from tests.conftest import auth_header

API = "/api/v3"
REPO = f"{API}/repos/alice/proj"


@pytest.fixture
def tokens(db: Database, make_token: Callable[..., str]) -> dict[str, dict[str, str]]:
    with db.session() as session:
        users: dict[str, User] = {
            name: accounts.create_user(session, name, f"{name}@example.com", None)
            for name in ("alice", "bob", "carol")
        }
    return {name: auth_header(make_token(user)) for name, user in users.items()}


@pytest.fixture
def repo(client: TestClient, tokens: dict[str, dict[str, str]]) -> None:
    created = client.post(f"{API}/user/repos", json={"name": "proj"}, headers=tokens["alice"])
    assert created.status_code == 201
    # carol may triage; bob is any signed-in user.
    added = client.put(
        f"{REPO}/collaborators/carol", json={"permission": "triage"}, headers=tokens["alice"]
    )
    assert added.status_code == 201


def test_issue_life_cycle_in_githubs_shapes(
    client: TestClient, db: Database, tokens: dict[str, dict[str, str]], repo: None
) -> None:
    alice, bob, carol = tokens["alice"], tokens["bob"], tokens["carol"]
    milestone = client.post(
        f"{REPO}/milestones",
        json={"title": "v1.0", "due_on": "2030-01-01T00:00:00Z", "description": "first"},
        headers=alice,
    )
    assert milestone.status_code == 201 and milestone.json()["number"] == 1
    created = client.post(
        f"{REPO}/issues",
        json={
            "title": "Crash <script>alert(1)</script>",
            "body": "It fails for @carol",
            "labels": ["bug"],
            "assignees": ["carol"],
            "milestone": 1,
        },
        headers=alice,
    )
    assert created.status_code == 201, created.text
    issue = created.json()
    assert created.headers["Location"] == issue["url"]
    assert issue["number"] == 1 and issue["state"] == "open" and issue["state_reason"] is None
    assert issue["url"].endswith("/api/v3/repos/alice/proj/issues/1")
    assert issue["html_url"].endswith("/alice/proj/issues/1")
    assert issue["user"]["login"] == "alice" and issue["author_association"] == "OWNER"
    assert [label["name"] for label in issue["labels"]] == ["bug"]
    assert issue["labels"][0]["color"] == "d73a4a" and issue["labels"][0]["default"] is True
    assert issue["assignee"]["login"] == "carol" and len(issue["assignees"]) == 1
    assert issue["milestone"]["title"] == "v1.0" and issue["milestone"]["open_issues"] == 1
    assert issue["reactions"]["total_count"] == 0 and "+1" in issue["reactions"]
    assert issue["pull_request"] is None and issue["locked"] is False

    # bob, a mere reader, opens an issue: labels he may not set are dropped, as on GitHub.
    other = client.post(f"{REPO}/issues", json={"title": "Idea", "labels": ["bug"]}, headers=bob)
    assert other.status_code == 201 and other.json()["labels"] == []
    assert other.json()["number"] == 2 and other.json()["author_association"] == "NONE"

    comment = client.post(f"{REPO}/issues/1/comments", json={"body": "Same here"}, headers=bob)
    assert comment.status_code == 201
    comment_json = comment.json()
    assert comment_json["user"]["login"] == "bob" and comment_json["body"] == "Same here"
    assert comment_json["html_url"].endswith(
        f"/alice/proj/issues/1#issuecomment-{comment_json['id']}"
    )
    comment_url = f"{REPO}/issues/comments/{comment_json['id']}"
    edited = client.patch(comment_url, json={"body": "Same here, on 1.2"}, headers=bob)
    assert edited.status_code == 200 and edited.json()["body"] == "Same here, on 1.2"
    # Someone else's comment: only writers moderate; carol triages, so she may not.
    assert client.patch(comment_url, json={"body": "x"}, headers=carol).status_code == 403
    listed = client.get(f"{REPO}/issues/1/comments").json()
    assert [c["body"] for c in listed] == ["Same here, on 1.2"]
    assert len(client.get(f"{REPO}/issues/comments").json()) == 1

    reacted = client.post(f"{REPO}/issues/1/reactions", json={"content": "+1"}, headers=bob)
    assert reacted.status_code == 201 and reacted.json()["content"] == "+1"
    again = client.post(f"{REPO}/issues/1/reactions", json={"content": "+1"}, headers=bob)
    assert again.status_code == 200 and again.json()["id"] == reacted.json()["id"]
    heart = client.post(f"{comment_url}/reactions", json={"content": "heart"}, headers=alice)
    assert heart.status_code == 201
    bad = client.post(f"{REPO}/issues/1/reactions", json={"content": "poop"}, headers=bob)
    assert bad.status_code == 422
    fetched = client.get(f"{REPO}/issues/1").json()
    assert fetched["reactions"]["+1"] == 1 and fetched["comments"] == 1
    assert client.get(comment_url).json()["reactions"]["heart"] == 1

    # carol (triage) closes as not planned; the author reopens; PATCH edits the title.
    closed = client.patch(
        f"{REPO}/issues/1", json={"state": "closed", "state_reason": "not_planned"}, headers=carol
    )
    assert closed.status_code == 200
    assert closed.json()["state"] == "closed" and closed.json()["state_reason"] == "not_planned"
    assert closed.json()["closed_by"]["login"] == "carol" and closed.json()["closed_at"]
    # bob is neither author nor triager of issue 1.
    assert client.patch(f"{REPO}/issues/1", json={"state": "open"}, headers=bob).status_code == 403
    reopened = client.patch(
        f"{REPO}/issues/1", json={"state": "open", "title": "Crash on start"}, headers=alice
    )
    assert (
        reopened.json()["state_reason"] == "reopened"
        and reopened.json()["title"] == "Crash on start"
    )
    events = [event["event"] for event in client.get(f"{REPO}/issues/1/events").json()]
    assert {"labeled", "assigned", "milestoned", "closed", "reopened", "renamed"} <= set(events)

    # Filters.
    def numbers(query: str) -> list[int]:
        return [item["number"] for item in client.get(f"{REPO}/issues?{query}").json()]

    assert numbers("") == [2, 1]
    assert numbers("labels=bug") == [1]
    assert numbers("assignee=carol") == [1]
    assert numbers("assignee=none") == [2]
    assert numbers("creator=bob") == [2]
    assert numbers("mentioned=carol") == [1]
    assert numbers("milestone=1") == [1]
    assert numbers("milestone=none") == [2]
    assert numbers("q=crash") == [1]
    assert numbers("creator=nobody-at-all") == []
    assert numbers("state=closed") == []
    assert numbers("sort=comments&direction=desc") == [1, 2]

    # Lock: bob can no longer comment; carol, triage but not write, can neither; alice can.
    locked = client.put(f"{REPO}/issues/1/lock", json={"lock_reason": "too heated"}, headers=carol)
    assert locked.status_code == 204
    assert client.get(f"{REPO}/issues/1").json()["active_lock_reason"] == "too heated"
    assert (
        client.post(f"{REPO}/issues/1/comments", json={"body": "more"}, headers=bob).status_code
        == 403
    )
    assert (
        client.post(f"{REPO}/issues/1/comments", json={"body": "ok"}, headers=alice).status_code
        == 201
    )
    bad_reason = client.put(f"{REPO}/issues/1/lock", json={"lock_reason": "boring"}, headers=alice)
    assert bad_reason.status_code == 422
    assert client.delete(f"{REPO}/issues/1/lock", headers=carol).status_code == 204

    deleted = client.delete(comment_url, headers=bob)
    assert deleted.status_code == 204 and client.get(comment_url).status_code == 404

    # Pull requests share the numbering and appear in the list with a `pull_request` object.
    with db.session() as session:
        repository = session.scalar(select(Repository).where(Repository.lower_name == "proj"))
        author = session.scalar(select(User).where(User.lower_username == "alice"))
        assert repository is not None and author is not None
        service.create_issue_record(session, repository, author, "A PR", "", is_pull_request=True)
    listed_all = client.get(f"{REPO}/issues").json()
    assert [item["number"] for item in listed_all] == [3, 2, 1]
    assert listed_all[0]["pull_request"]["url"].endswith("/repos/alice/proj/pulls/3")
    assert listed_all[0]["html_url"].endswith("/alice/proj/pull/3")


def test_labels_milestones_and_validation(
    client: TestClient, tokens: dict[str, dict[str, str]], repo: None
) -> None:
    alice, bob, carol = tokens["alice"], tokens["bob"], tokens["carol"]
    labels = client.get(f"{REPO}/labels").json()
    assert {"bug", "enhancement", "good first issue", "wontfix"} <= {lb["name"] for lb in labels}
    made = client.post(
        f"{REPO}/labels",
        json={"name": "needs <b>triage</b>", "color": "#FF0000", "description": "x"},
        headers=alice,
    )
    assert made.status_code == 201
    assert made.json()["color"] == "ff0000" and made.json()["default"] is False
    duplicate = client.post(f"{REPO}/labels", json={"name": "BUG"}, headers=alice)
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"][0] == {
        "resource": "Label",
        "field": "name",
        "code": "already_exists",
    }
    bad_color = client.post(f"{REPO}/labels", json={"name": "x", "color": "red"}, headers=alice)
    assert bad_color.status_code == 422 and bad_color.json()["errors"][0]["field"] == "color"
    assert client.post(f"{REPO}/labels", json={"name": "y"}, headers=bob).status_code == 403
    renamed = client.patch(
        f"{REPO}/labels/wontfix", json={"new_name": "won't fix", "color": "000000"}, headers=alice
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "won't fix"
    assert client.get(f"{REPO}/labels/wontfix").status_code == 404
    assert client.delete(f"{REPO}/labels/question", headers=alice).status_code == 204
    # Deleted defaults stay deleted.
    assert "question" not in {lb["name"] for lb in client.get(f"{REPO}/labels").json()}

    assert client.post(f"{REPO}/issues", json={"title": "One"}, headers=bob).status_code == 201
    unknown = client.post(f"{REPO}/issues/1/labels", json={"labels": ["nope"]}, headers=carol)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["resource"] == "Label"
    assert unknown.json()["errors"][0]["code"] == "invalid"
    # A reader may not label.
    assert client.post(f"{REPO}/issues/1/labels", json=["bug"], headers=bob).status_code == 403
    added = client.post(f"{REPO}/issues/1/labels", json=["bug", "enhancement"], headers=carol)
    assert added.status_code == 200
    assert [lb["name"] for lb in added.json()] == ["bug", "enhancement"]
    replaced = client.put(
        f"{REPO}/issues/1/labels", json={"labels": [{"name": "documentation"}]}, headers=carol
    )
    assert [lb["name"] for lb in replaced.json()] == ["documentation"]
    removed = client.delete(f"{REPO}/issues/1/labels/documentation", headers=carol)
    assert removed.status_code == 200 and removed.json() == []
    assert client.delete(f"{REPO}/issues/1/labels/bug", headers=carol).status_code == 404

    # Assignees must exist and have access.
    for login in ("bob", "no-such-user"):
        refused = client.post(
            f"{REPO}/issues/1/assignees", json={"assignees": [login]}, headers=carol
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "assignees"
    assigned = client.post(
        f"{REPO}/issues/1/assignees", json={"assignees": ["carol"]}, headers=alice
    )
    assert assigned.status_code == 201 and assigned.json()["assignees"][0]["login"] == "carol"
    unassigned = client.request(
        "DELETE", f"{REPO}/issues/1/assignees", json={"assignees": ["carol"]}, headers=alice
    )
    assert unassigned.json()["assignees"] == []
    assert client.get(f"{REPO}/assignees/carol").status_code == 204
    assert client.get(f"{REPO}/assignees/bob").status_code == 404

    # Milestones: counts are progress; a missing milestone on an issue is a 422.
    client.post(f"{REPO}/milestones", json={"title": "v1"}, headers=alice)
    duplicate_ms = client.post(f"{REPO}/milestones", json={"title": "V1"}, headers=alice)
    assert duplicate_ms.status_code == 422
    assert client.post(f"{REPO}/milestones", json={"title": "v2"}, headers=bob).status_code == 403
    assert client.patch(f"{REPO}/issues/1", json={"milestone": 7}, headers=alice).status_code == 422
    client.patch(f"{REPO}/issues/1", json={"milestone": 1, "state": "closed"}, headers=alice)
    client.post(f"{REPO}/issues", json={"title": "Two", "milestone": 1}, headers=alice)
    progress = client.get(f"{REPO}/milestones/1").json()
    assert (progress["open_issues"], progress["closed_issues"]) == (1, 1)
    closed = client.patch(f"{REPO}/milestones/1", json={"state": "closed"}, headers=alice).json()
    assert closed["state"] == "closed" and closed["closed_at"]
    assert client.get(f"{REPO}/milestones").json() == []
    assert len(client.get(f"{REPO}/milestones?state=all").json()) == 1
    assert client.delete(f"{REPO}/milestones/1", headers=alice).status_code == 204
    assert client.get(f"{REPO}/issues/2").json()["milestone"] is None

    # Input an attacker would send.
    assert client.post(f"{REPO}/issues", json={"title": ""}, headers=bob).status_code == 422
    assert client.post(f"{REPO}/issues", json={"title": "a" * 300}, headers=bob).status_code == 422
    assert client.post(f"{REPO}/issues", json={"title": "x\u0000y"}, headers=bob).status_code == 422
    assert client.post(f"{REPO}/issues", json={"title": "anon"}).status_code == 401
    assert client.get(f"{REPO}/issues/999").status_code == 404
    assert client.get(f"{REPO}/issues/-1").status_code == 404
    assert client.get(f"{REPO}/issues/comments/999").status_code == 404
    assert client.get(f"{REPO}/milestones/999").status_code == 404


def test_private_repository_issues_are_invisible(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    client.post(f"{API}/user/repos", json={"name": "secret", "private": True}, headers=alice)
    client.post(f"{API}/user/repos", json={"name": "proj"}, headers=alice)
    secret = f"{API}/repos/alice/secret"
    made = client.post(f"{secret}/issues", json={"title": "Hidden plan"}, headers=alice)
    assert made.status_code == 201
    for path in ("/issues", "/issues/1", "/issues/1/comments", "/labels", "/milestones"):
        assert client.get(secret + path, headers=bob).status_code == 404
        assert client.get(secret + path).status_code == 404
    assert (
        client.post(f"{secret}/issues/1/comments", json={"body": "hi"}, headers=bob).status_code
        == 404
    )
    # A private issue naming a public one records a cross-reference on the public issue; an
    # outsider's timeline and event list leave it out, so the private title never leaks.
    public = client.post(f"{REPO}/issues", json={"title": "Public bug"}, headers=bob).json()
    assert public["number"] == 1
    hidden = {"title": "Hidden fix", "body": "Fixes alice/proj#1"}
    client.post(f"{secret}/issues", json=hidden, headers=alice)
    client.post(f"{REPO}/issues/1/comments", json={"body": "Any news?"}, headers=bob)
    for headers in (bob, {}):
        timeline = client.get(f"{REPO}/issues/1/timeline", headers=headers)
        assert [item["event"] for item in timeline.json()] == ["commented"]
        assert "Hidden" not in timeline.text
        events = client.get(f"{REPO}/issues/1/events", headers=headers)
        assert events.json() == [] and "Hidden" not in events.text
    # MySQL keeps whole seconds, so the two may share a timestamp: compare by kind.
    mine = {
        item["event"]: item
        for item in client.get(f"{REPO}/issues/1/timeline", headers=alice).json()
    }
    assert sorted(mine) == ["commented", "cross-referenced"]
    assert mine["cross-referenced"]["source"]["issue"]["title"] == "Hidden fix"
    assert mine["commented"]["body"] == "Any news?"
    assert mine["commented"]["actor"]["login"] == "bob"
    assert client.get(f"{secret}/issues/1/events", headers=bob).status_code == 404
    # The private issue's closing keyword did not close anything: issues close on merge or push.
    assert client.get(f"{REPO}/issues/1").json()["state"] == "open"
