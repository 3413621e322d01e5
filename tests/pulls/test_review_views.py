"""The web side of review and protection: the branch protection settings page, the commit
statuses box, and line comments, replies, resolution, suggestions and review submission on the
"Files changed" tab (the htmx endpoints)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.pulls.conftest import World, commit_on, open_pull
from tests.web.forms import csrf_from, log_in, page_token

from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.pulls.models import PullReview, ReviewComment
from opencodehub.repos import statuses
from opencodehub.repos.models import Collaborator, ProtectedBranch, Repository

HTMX = {"HX-Request": "true"}


def _writer(db: Database, repo: Repository, user: User) -> None:
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repo.id, user_id=user.id, permission=Permission.WRITE)
        )


def test_branch_protection_settings_page(
    db: Database, client: TestClient, world: World, make_user: Callable[..., User]
) -> None:
    log_in(client, "alice")
    page = client.get("/alice/project/settings/branches")
    assert page.status_code == 200
    assert "No branch is protected yet." in page.text
    assert 'href="/alice/project/settings/branches"' in client.get("/alice/project/settings").text
    token = csrf_from(page.text)
    saved = client.post(
        "/alice/project/settings/branches",
        data={
            "csrf_token": token,
            "pattern": "release/*",
            "require_pull_request": "true",
            "required_approving_review_count": "2",
            "require_status_checks": "true",
            "contexts": "ci\nlint\n",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with db.session() as session:
        rule = session.scalar(select(ProtectedBranch))
        assert rule is not None
        assert (rule.pattern, rule.required_approving_review_count) == ("release/*", 2)
        assert rule.context_list == ["ci", "lint"]
        rule_id = rule.id
    edit = client.get(f"/alice/project/settings/branches?rule={rule_id}")
    assert 'value="release/*"' in edit.text
    bad = client.post(
        "/alice/project/settings/branches",
        data={"csrf_token": token, "pattern": "", "required_approving_review_count": "9"},
    )
    assert bad.status_code == 422
    assert (
        client.post(
            "/alice/project/settings/branches", data={"pattern": "x"}, follow_redirects=False
        ).status_code
        == 403
    )  # no CSRF token
    deleted = client.post(
        f"/alice/project/settings/branches/{rule_id}/delete",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    with db.session() as session:
        assert session.scalar(select(ProtectedBranch)) is None

    # Writers may not manage rules; strangers do not see a private repository's settings.
    bob = make_user("bob")
    _writer(db, world.repo, bob)
    client.cookies.clear()
    log_in(client, "bob")
    assert client.get("/alice/project/settings/branches").status_code == 403


def test_commit_statuses_box(
    db: Database, settings: Settings, client: TestClient, world: World
) -> None:
    sha = commit_on(settings, world.repo, {"a.txt": b"a\n"}, branch="main")
    with db.session() as session:
        record = session.get(Repository, world.repo.id)
        assert record is not None
        statuses.set_status(
            session, record, sha, state="success", context="ci/build", description="Built"
        )
    page = client.get(f"/alice/project/commit/{sha}")
    assert f'hx-get="/alice/project/commit/{sha}/statuses"' in page.text
    box = client.get(f"/alice/project/commit/{sha}/statuses")
    assert box.status_code == 200
    assert 'data-state="success"' in box.text and "ci/build" in box.text and "Built" in box.text
    assert client.get("/alice/project/commit/nope/statuses").status_code == 404
    bare = commit_on(settings, world.repo, {"b.txt": b"b\n"}, branch="main")
    empty = client.get(f"/alice/project/commit/{bare}/statuses")
    assert empty.status_code == 200 and "commit-statuses" not in empty.text


def test_line_comments_threads_and_review_on_the_files_tab(
    db: Database,
    settings: Settings,
    client: TestClient,
    world: World,
    make_user: Callable[..., User],
) -> None:
    commit_on(settings, world.repo, {"app.txt": b"one\ntwo\nthree\n"}, branch="main")
    commit_on(settings, world.repo, {"app.txt": b"one\nTWO\nthree\n"}, branch="feature")
    open_pull(client, world)
    bob = make_user("bob")
    _writer(db, world.repo, bob)
    log_in(client, "bob")
    token = page_token(client, "/alice/project")
    review = "/alice/project/pull/1/review"
    headers = {**HTMX, "X-CSRF-Token": token}

    form = client.get(f"{review}/comment-form", params={"path": "app.txt", "line": 2})
    assert form.status_code == 200 and 'name="line" value="2"' in form.text

    # A pending review comment, then a single comment with a suggestion.
    pending = client.post(
        f"{review}/comments",
        data={"path": "app.txt", "line": "2", "body": "Why **upper**?", "mode": "review"},
        headers=headers,
    )
    assert pending.status_code == 200, pending.text
    assert 'data-testid="review-thread"' in pending.text
    assert "<strong>upper</strong>" in pending.text and "Pending" in pending.text
    single = client.post(
        f"{review}/comments",
        data={"path": "app.txt", "line": "2", "body": "```suggestion\nTwo\n```", "mode": "single"},
        headers=headers,
    )
    assert "Commit suggestion" in single.text
    outside = client.post(
        f"{review}/comments",
        data={"path": "missing.txt", "line": "2", "body": "x"},
        headers=headers,
    )
    assert outside.status_code == 422 and "review-error" in outside.text
    with db.session() as session:
        root_id, single_id = session.scalars(select(ReviewComment.id).order_by(ReviewComment.id))

    reply = client.post(
        f"{review}/comments/{root_id}/reply", data={"body": "Also"}, headers=headers
    )
    assert reply.text.count("review-comment") >= 2

    # The files tab shows the threads under their line, a "+" per line and the review form.
    for mode in ("unified", "split"):
        files = client.get(f"/alice/project/pull/1/files?diff={mode}").text
        row = files[files.index('class="review-row"') :]
        assert row.index(f'id="thread-{root_id}"') < row.index("</tr>")
        assert files.count(f'id="thread-{root_id}"') == 1
        assert "comment-form?path=app.txt&amp;line=2&amp;side=RIGHT" in files
        assert "comment-form?path=app.txt&amp;line=2&amp;side=LEFT" in files
        assert 'data-testid="review-submit"' in files
    resolved = client.post(f"{review}/comments/{root_id}/resolve", headers=headers)
    assert 'data-testid="resolved"' in resolved.text
    unresolved = client.post(f"{review}/comments/{root_id}/unresolve", headers=headers)
    assert 'data-testid="resolved"' not in unresolved.text
    applied = client.post(f"{review}/comments/{single_id}/apply-suggestion", headers=headers)
    assert "Suggestion applied" in applied.text

    submitted = client.post(
        f"{review}/submit",
        data={"csrf_token": token, "event": "APPROVE", "body": "LGTM"},
        follow_redirects=False,
    )
    assert submitted.status_code == 303
    with db.session() as session:
        states = [
            r.state.value for r in session.scalars(select(PullReview).order_by(PullReview.id))
        ]
        # The pending review (with its comment and the reply) was submitted as one batch.
        assert states[0] == "APPROVED"
    assert client.post(f"{review}/comments/{root_id}/resolve").status_code == 403  # no CSRF

    # The conversation: the review with its threads, the decision, statuses, reviewers.
    make_user("carol")
    conversation = client.get("/alice/project/pull/1").text
    assert 'data-testid="timeline-review" data-state="APPROVED"' in conversation
    assert f'id="thread-{root_id}"' in conversation
    assert 'data-testid="commit-statuses"' not in conversation  # the head has no statuses
    assert 'data-testid="request-reviewers"' in conversation
    client.cookies.clear()
    log_in(client, "alice")
    token = page_token(client, "/alice/project/pull/1")
    requested = client.post(
        f"{review}/reviewers",
        data={"csrf_token": token, "reviewers": "@carol, nobody-here"},
        follow_redirects=False,
    )
    assert requested.status_code == 303
    assert "Review requested." not in client.get("/alice/project/pull/1").text
    client.post(f"{review}/reviewers", data={"csrf_token": token, "reviewers": "carol"})
    page = client.get("/alice/project/pull/1").text
    assert '<span data-testid="requested-reviewer">@carol</span>' in page
    assert 'data-testid="review-decision"' in page
    client.post(f"{review}/reviewers", data={"csrf_token": token, "remove": "carol"})
    assert 'data-testid="requested-reviewer"' not in client.get("/alice/project/pull/1").text
