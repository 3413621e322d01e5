"""Code review through the REST API: GitHub's shapes for reviews, review comments and requested
reviewers; line placement and its bad input; outdated comments and stale approvals after a push;
suggestions; the review decision and branch protection at merge time; PyGithub's review call."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from github import Auth, Github
from sqlalchemy import select
from tests.conftest import LiveServer, auth_header
from tests.pulls.conftest import World, commit_on, open_pull

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import ValidationFailed
from opencodehub.db.engine import Database
from opencodehub.notifications.models import NotificationThread
from opencodehub.pulls import protection, reviews
from opencodehub.pulls.models import PullRequest, ReviewComment
from opencodehub.pulls.review_jobs import on_synchronize
from opencodehub.repos import statuses, store
from opencodehub.repos.models import Collaborator, Repository

REVIEW_KEYS = {
    "id",
    "node_id",
    "user",
    "body",
    "state",
    "html_url",
    "pull_request_url",
    "author_association",
    "_links",
    "commit_id",
    "submitted_at",
}
COMMENT_KEYS = {
    "url",
    "pull_request_review_id",
    "id",
    "node_id",
    "diff_hunk",
    "path",
    "position",
    "original_position",
    "commit_id",
    "original_commit_id",
    "user",
    "body",
    "created_at",
    "updated_at",
    "html_url",
    "pull_request_url",
    "author_association",
    "_links",
    "start_line",
    "original_start_line",
    "start_side",
    "line",
    "original_line",
    "side",
    "subject_type",
}
APP = b"".join(f"line {i}\n".encode() for i in range(1, 21))


def _writer(
    db: Database, repo: Repository, user: User, permission: Permission = Permission.WRITE
) -> None:
    with db.session() as session:
        session.add(Collaborator(repository_id=repo.id, user_id=user.id, permission=permission))


def _feature(settings: Settings, world: World) -> str:
    """main gets a 20-line file; the feature branch changes lines 5 and 15."""
    commit_on(settings, world.repo, {"app.txt": APP}, branch="main")
    changed = APP.replace(b"line 5\n", b"line five\n").replace(b"line 15\n", b"line fifteen\n")
    return commit_on(settings, world.repo, {"app.txt": changed}, branch="feature")


@pytest.fixture
def bob(db: Database, world: World, make_user: Callable[..., User]) -> User:
    user = make_user("bob")
    _writer(db, world.repo, user)
    return user


def test_reviews_and_comments_api(
    db: Database,
    settings: Settings,
    client: TestClient,
    world: World,
    bob: User,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    head = _feature(settings, world)
    open_pull(client, world)
    bob_headers = auth_header(make_token(bob))
    reviews_url = f"{world.pull_url(1)}/reviews"

    # A pending review with a comment on a changed line and a range: only bob sees it.
    pending = client.post(
        reviews_url,
        json={
            "body": "First pass",
            "comments": [
                {"path": "app.txt", "line": 5, "side": "RIGHT", "body": "Why five?"},
                {"path": "app.txt", "start_line": 14, "line": 15, "body": "Range"},
            ],
        },
        headers=bob_headers,
    )
    assert pending.status_code == 200, pending.text
    review = pending.json()
    assert set(review) == REVIEW_KEYS - {"submitted_at"}
    assert (review["state"], review["commit_id"], review["user"]["login"]) == (
        "PENDING",
        head,
        "bob",
    )
    assert review["author_association"] == "COLLABORATOR"
    assert review["pull_request_url"].endswith("/repos/alice/project/pulls/1")
    assert client.get(reviews_url, headers=world.headers).json() == []
    assert client.get(f"{reviews_url}/{review['id']}", headers=world.headers).status_code == 404
    second = client.post(reviews_url, json={"body": "again"}, headers=bob_headers)
    assert second.status_code == 422  # one pending review per user

    comments = client.get(f"{reviews_url}/{review['id']}/comments", headers=bob_headers).json()
    assert [c["line"] for c in comments] == [5, 15]
    first = comments[0]
    assert set(first) == COMMENT_KEYS
    assert first["side"] == "RIGHT" and first["start_line"] is None
    assert first["diff_hunk"].startswith("@@ ") and first["diff_hunk"].endswith("+line five")
    assert first["position"] == first["original_position"] == 5
    assert (comments[1]["start_line"], comments[1]["start_side"]) == (14, "RIGHT")

    submitted = client.post(
        f"{reviews_url}/{review['id']}/events",
        json={"event": "REQUEST_CHANGES", "body": "Please fix"},
        headers=bob_headers,
    )
    assert submitted.status_code == 200
    assert submitted.json()["state"] == "CHANGES_REQUESTED"
    assert "submitted_at" in submitted.json()
    listed = client.get(reviews_url, headers=world.headers).json()
    assert [r["state"] for r in listed] == ["CHANGES_REQUESTED"]
    with db.session() as session:
        pull = session.get(PullRequest, _pull_id(db))
        assert pull is not None
        assert reviews.review_decision(session, pull) == "CHANGES_REQUESTED"
    updated = client.put(
        f"{reviews_url}/{review['id']}", json={"body": "Edited"}, headers=bob_headers
    )
    assert updated.json()["body"] == "Edited"

    # Single comments, replies (to any comment of a thread: they join its root), edits.
    single = client.post(
        f"{world.pull_url(1)}/comments",
        json={"body": "Old line", "commit_id": head, "path": "app.txt", "line": 5, "side": "LEFT"},
        headers=world.headers,
    )
    assert single.status_code == 201, single.text
    assert single.json()["side"] == "LEFT" and single.json()["original_line"] == 5
    assert single.headers["Location"] == single.json()["url"]
    reply = client.post(
        f"{world.pull_url(1)}/comments",
        json={"body": "Agreed", "in_reply_to": first["id"]},
        headers=world.headers,
    )
    assert reply.status_code == 201
    assert reply.json()["in_reply_to_id"] == first["id"]
    assert (reply.json()["path"], reply.json()["line"]) == ("app.txt", 5)
    nested = client.post(
        f"{world.pull_url(1)}/comments/{reply.json()['id']}/replies",
        json={"body": "Me too"},
        headers=bob_headers,
    )
    assert nested.json()["in_reply_to_id"] == first["id"]
    every = client.get(f"{world.pull_url(1)}/comments").json()
    assert len(every) == 5
    assert len(client.get(f"{world.api}/pulls/comments", params={"per_page": 2}).json()) == 2
    comment_url = f"{world.api}/pulls/comments/{single.json()['id']}"
    assert client.get(comment_url).json()["body"] == "Old line"
    patched = client.patch(comment_url, json={"body": "Older line"}, headers=world.headers)
    assert patched.json()["body"] == "Older line"
    assert (
        client.patch(comment_url, json={"body": "mine now"}, headers=bob_headers).status_code == 200
    )
    assert client.delete(comment_url, headers=world.headers).status_code == 204
    assert client.get(comment_url).status_code == 404

    # Dismissal (write access, a message) turns the verdict into DISMISSED.
    dismissed = client.put(
        f"{reviews_url}/{review['id']}/dismissals",
        json={"message": "Addressed", "event": "DISMISS"},
        headers=world.headers,
    )
    assert dismissed.json()["state"] == "DISMISSED"
    again = client.put(
        f"{reviews_url}/{review['id']}/dismissals", json={"message": "x"}, headers=world.headers
    )
    assert again.status_code == 422

    # Bad input.
    def post_review(headers: dict[str, str], **body: object) -> int:
        return client.post(reviews_url, json=body, headers=headers).status_code

    outside = {"path": "app.txt", "line": 10, "body": "not in the diff"}
    assert post_review(bob_headers, event="COMMENT", body="x", comments=[outside]) == 422
    unknown_path = {"path": "nope.txt", "line": 1, "body": "x"}
    assert post_review(bob_headers, event="COMMENT", body="x", comments=[unknown_path]) == 422
    own = client.post(reviews_url, json={"event": "APPROVE"}, headers=world.headers)
    assert own.status_code == 422
    assert own.json()["message"] == "Can not approve your own pull request"
    assert post_review(world.headers, event="REQUEST_CHANGES", body="x") == 422
    assert post_review(bob_headers, event="REQUEST_CHANGES") == 422  # a body is required
    assert post_review(bob_headers, event="MAYBE") == 422
    bad_line = client.post(
        f"{world.pull_url(1)}/comments",
        json={"body": "x", "commit_id": head, "path": "app.txt", "line": 10},
        headers=bob_headers,
    )
    assert bad_line.status_code == 422
    assert "line must be part of the diff" in bad_line.json()["message"]
    assert client.post(reviews_url, json={"event": "APPROVE"}).status_code == 401
    assert client.get(f"{world.pull_url(9)}/reviews").status_code == 404

    # Requested reviewers.
    carol = make_user("carol")
    _writer(db, world.repo, carol, Permission.READ)
    make_user("dave")  # no access to... a public repository: readable, so requestable
    requested_url = f"{world.pull_url(1)}/requested_reviewers"
    added = client.post(requested_url, json={"reviewers": ["carol"]}, headers=world.headers)
    assert added.status_code == 201, added.text
    assert [u["login"] for u in added.json()["requested_reviewers"]] == ["carol"]
    assert added.json()["number"] == 1
    with db.session() as session:
        thread = session.scalar(
            select(NotificationThread).where(NotificationThread.user_id == carol.id)
        )
        assert thread is not None and thread.reason == "review_requested" and thread.unread
    assert client.get(requested_url).json() == {
        "users": added.json()["requested_reviewers"],
        "teams": [],
    }
    pull_json = client.get(world.pull_url(1)).json()
    assert pull_json["requested_reviewers"] == added.json()["requested_reviewers"]
    assert pull_json["requested_teams"] == []
    author = client.post(requested_url, json={"reviewers": ["alice"]}, headers=world.headers)
    assert author.status_code == 422
    ghost = client.post(requested_url, json={"reviewers": ["ghost"]}, headers=world.headers)
    assert ghost.status_code == 422
    assert "collaborators" in ghost.json()["message"]
    assert client.post(requested_url, json={"reviewers": ["bob"]}).status_code == 401
    removed = client.request(
        "DELETE", requested_url, json={"reviewers": ["carol"]}, headers=world.headers
    )
    assert removed.status_code == 200
    assert removed.json()["requested_reviewers"] == []


def _pull_id(db: Database, number: int = 1) -> int:
    with db.session() as session:
        pull = session.query(PullRequest).filter_by(number=number).one()
        return pull.id


def test_private_pull_request_reviews_are_not_found_for_strangers(
    db: Database,
    settings: Settings,
    client: TestClient,
    world: World,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    _feature(settings, world)
    open_pull(client, world)
    with db.session() as session:
        record = session.get(Repository, world.repo.id)
        assert record is not None
        record.visibility = "private"  # type: ignore[assignment]
    stranger = auth_header(make_token(make_user("mallory")))
    assert client.get(f"{world.pull_url(1)}/reviews", headers=stranger).status_code == 404
    posted = client.post(
        f"{world.pull_url(1)}/reviews", json={"event": "APPROVE"}, headers=stranger
    )
    assert posted.status_code == 404
    assert client.get(f"{world.api}/pulls/comments", headers=stranger).status_code == 404
    assert (
        client.get(f"{world.pull_url(1)}/requested_reviewers", headers=stranger).status_code == 404
    )


def test_push_marks_comments_outdated_and_dismisses_stale_approvals(
    db: Database,
    settings: Settings,
    client: TestClient,
    world: World,
    bob: User,
    make_token: Callable[..., str],
) -> None:
    _feature(settings, world)
    open_pull(client, world)
    bob_headers = auth_header(make_token(bob))
    with db.session() as session:
        record = session.get(Repository, world.repo.id)
        assert record is not None
        protection.save_rule(
            session,
            Actor(user=session.get(User, world.owner.id)),
            record,
            "main",
            protection.RuleSettings(
                require_pull_request=True,
                required_approving_review_count=1,
                dismiss_stale_reviews=True,
            ),
        )
    approved = client.post(
        f"{world.pull_url(1)}/reviews",
        json={
            "event": "APPROVE",
            "comments": [
                {"path": "app.txt", "line": 5, "body": "five"},
                {"path": "app.txt", "line": 15, "body": "fifteen"},
            ],
        },
        headers=bob_headers,
    )
    assert approved.status_code == 200, approved.text
    with db.session() as session:
        pull = session.get(PullRequest, _pull_id(db))
        assert pull is not None
        assert reviews.review_decision(session, pull) == "APPROVED"

    changed = APP.replace(b"line 5\n", b"line FIVE\n").replace(b"line 15\n", b"line fifteen\n")
    new_head = commit_on(settings, world.repo, {"app.txt": changed}, branch="feature")
    # The pull request follows its head (as the push handler does), then the review job runs.
    from opencodehub.pulls import service as pulls

    with db.session() as session:
        pull = session.get(PullRequest, _pull_id(db))
        assert pull is not None
        assert pulls.synchronize(session, settings, pull, None)
    assert on_synchronize(db, settings, {"action": "synchronize", "pull_request_id": _pull_id(db)})
    assert not on_synchronize(db, settings, {"action": "opened", "pull_request_id": _pull_id(db)})

    comments = {c["body"]: c for c in client.get(f"{world.pull_url(1)}/comments").json()}
    five, fifteen = comments["five"], comments["fifteen"]
    assert (five["line"], five["position"], five["original_line"]) == (None, None, 5)
    assert five["commit_id"] != new_head and five["original_commit_id"] != new_head
    assert (fifteen["line"], fifteen["commit_id"]) == (15, new_head)
    with db.session() as session:
        outdated = session.query(ReviewComment).filter_by(body="five").one()
        assert outdated.outdated is True
    states = [r["state"] for r in client.get(f"{world.pull_url(1)}/reviews").json()]
    assert states == ["DISMISSED"]
    with db.session() as session:
        pull = session.get(PullRequest, _pull_id(db))
        assert pull is not None
        assert reviews.review_decision(session, pull) == "REVIEW_REQUIRED"


def test_apply_suggestion(
    db: Database,
    settings: Settings,
    client: TestClient,
    world: World,
    bob: User,
    make_token: Callable[..., str],
) -> None:
    _feature(settings, world)
    open_pull(client, world)
    suggestion = "Try this:\n```suggestion\nline 5 (five)\n```\n"
    made = client.post(
        f"{world.pull_url(1)}/comments",
        json={"body": suggestion, "path": "app.txt", "line": 5},
        headers=auth_header(make_token(bob)),
    )
    stale = client.post(
        f"{world.pull_url(1)}/comments",
        json={"body": "```suggestion\nfifteen!\n```", "path": "app.txt", "line": 15},
        headers=auth_header(make_token(bob)),
    )
    git = store.open_repository(settings, world.repo.id)

    def apply(comment_id: int) -> str:
        with db.session() as session:
            pull = session.get(PullRequest, _pull_id(db))
            comment = session.get(ReviewComment, comment_id)
            assert pull is not None and comment is not None
            actor = Actor(user=session.get(User, world.owner.id), method="password")
            return reviews.apply_suggestion(session, settings, actor, pull, comment)

    sha = apply(made.json()["id"])
    assert str(git.references["refs/heads/feature"].target) == sha
    blob = git[git[sha].tree["app.txt"].id].data
    assert b"line 5 (five)\nline 6\n" in blob and b"line five" not in blob
    with pytest.raises(ValidationFailed, match="already applied"):
        apply(made.json()["id"])
    # Someone changes line 15 on the head branch: the suggestion no longer applies.
    commit_on(
        settings, world.repo, {"app.txt": blob.replace(b"line fifteen", b"15")}, branch="feature"
    )
    with pytest.raises(ValidationFailed, match="no longer applies"):
        apply(stale.json()["id"])


def test_merge_is_refused_until_protection_is_satisfied(
    db: Database,
    settings: Settings,
    client: TestClient,
    world: World,
    bob: User,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    carol = make_user("carol")
    _writer(db, world.repo, carol)
    commit_on(settings, world.repo, {".github/CODEOWNERS": b"*.txt @carol\n"}, branch="main")
    head = _feature(settings, world)
    open_pull(client, world)
    protected = client.put(
        f"{world.api}/branches/main/protection",
        json={
            "required_status_checks": {"strict": True, "contexts": ["ci"]},
            "enforce_admins": True,
            "required_pull_request_reviews": {
                "required_approving_review_count": 1,
                "require_code_owner_reviews": True,
            },
            "restrictions": None,
        },
        headers=world.headers,
    )
    assert protected.status_code == 200

    def merge() -> tuple[int, str]:
        answer = client.put(f"{world.pull_url(1)}/merge", json={}, headers=world.headers)
        return answer.status_code, answer.json()["message"]

    assert merge() == (
        405,
        "At least 1 approving review is required by reviewers with write access.",
    )
    approve = {"event": "APPROVE"}
    client.post(f"{world.pull_url(1)}/reviews", json=approve, headers=auth_header(make_token(bob)))
    assert merge() == (405, "Waiting on code owner review from @carol.")
    client.post(
        f"{world.pull_url(1)}/reviews", json=approve, headers=auth_header(make_token(carol))
    )
    assert merge() == (405, 'Required status check "ci" is expected.')
    with db.session() as session:
        record = session.get(Repository, world.repo.id)
        assert record is not None
        statuses.set_status(session, record, head, state="success", context="ci")
    # Strict: the base moved on, so the head must be brought up to date first.
    commit_on(settings, world.repo, {"other.md": b"x\n"}, branch="main")
    assert merge() == (405, "Head branch is out of date with the base branch.")
    git = store.open_repository(settings, world.repo.id)
    main_tip = str(git.references["refs/heads/main"].target)
    updated = commit_on(
        settings, world.repo, {}, branch="feature", parents=[head, main_tip], message="Merge main"
    )
    with db.session() as session:
        record = session.get(Repository, world.repo.id)
        assert record is not None
        statuses.set_status(session, record, updated, state="success", context="ci")
    status, message = merge()
    assert (status, message) == (200, "Pull Request successfully merged")


@pytest.mark.slow
def test_pygithub_review(
    db: Database,
    settings: Settings,
    live_server: LiveServer,
    client: TestClient,
    world: World,
    bob: User,
    make_token: Callable[..., str],
) -> None:
    head = _feature(settings, world)
    open_pull(client, world)
    gh = Github(auth=Auth.Token(make_token(bob)), base_url=f"{live_server.url}/api/v3")
    pr = gh.get_repo("alice/project").get_pull(1)
    review = pr.create_review(
        commit=gh.get_repo("alice/project").get_commit(head),
        body="Looks good",
        event="APPROVE",
        comments=[{"path": "app.txt", "line": 5, "body": "nice"}],
    )
    assert (review.state, review.user.login, review.commit_id) == ("APPROVED", "bob", head)
    assert [r.state for r in pr.get_reviews()] == ["APPROVED"]
    comments = list(pr.get_review_comments())
    assert [(c.path, c.line, c.body) for c in comments] == [("app.txt", 5, "nice")]
    pending = pr.create_review(body="draft")
    assert pending.state == "PENDING"
    assert pr.get_review(pending.id).body == "draft"
