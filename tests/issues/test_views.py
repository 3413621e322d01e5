"""The issue pages driven as a browser would, with a TestClient: forms, CSRF, sanitizing and
references that must not leak what the viewer cannot see."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.issues import service
from opencodehub.repos.models import Repository
from tests.issues.conftest import private_repo
from tests.repos.git_helpers import commit_files, create_repo
from tests.web.forms import csrf_from, log_in, log_out, post_form

BUG_TEMPLATE = """---
name: Bug report
about: Something is broken
title: "[bug] "
labels: bug
---
**Steps to reproduce**
"""


def test_issue_pages_and_forms(
    client: TestClient, db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    alice, carol = make_user("alice"), make_user("carol")
    make_user("bob")
    repo = create_repo(db, settings, alice, "proj", auto_init=True)
    commit_files(
        settings,
        repo,
        {
            ".github/ISSUE_TEMPLATE/bug.md": BUG_TEMPLATE.encode(),
            ".github/ISSUE_TEMPLATE/feature.md": b"---\nname: Feature\n---\nWhat and why?\n",
            ".github/pull_request_template.md": b"## Checklist\n",
        },
    )
    secret = private_repo(db, settings, carol, "secret")
    with db.session() as session:
        carol_row, secret_row = session.get(User, carol.id), session.get(Repository, secret.id)
        service.create_issue_record(session, secret_row, carol_row, "TOP SECRET PLAN", "")
        assert service.pull_request_template(settings, session.get(Repository, repo.id)) == (
            "## Checklist\n"
        )

    log_in(client, "alice")
    chooser = client.get("/alice/proj/issues/new")
    assert chooser.status_code == 200 and "Bug report" in chooser.text and "Feature" in chooser.text
    form = client.get("/alice/proj/issues/new?template=bug.md")
    assert 'value="[bug] "' in form.text and "**Steps to reproduce**" in form.text

    body = (
        "Broken since #1. See alice/proj#1, carol/secret#1 and @bob.\n\n"
        "<script>alert('body')</script><img src=x onerror=alert(1)>\n\n`@carol #1`"
    )
    # Without the CSRF token nothing is written.
    refused = client.post(
        "/alice/proj/issues/new", data={"title": "x", "body": "y"}, follow_redirects=False
    )
    assert refused.status_code == 403
    created = post_form(
        client,
        "/alice/proj/issues/new?template=bug.md",
        "/alice/proj/issues/new",
        {"title": "<script>alert('title')</script> crash", "body": body, "template": "bug.md"},
    )
    assert created.status_code == 303 and created.headers["location"] == "/alice/proj/issues/1"

    page = client.get("/alice/proj/issues/1")
    assert page.status_code == 200
    html = page.text
    rendered = html.split('data-testid="issue-body">', 1)[1].split("</div>", 1)[0]
    assert "<script>alert" not in html and "onerror" not in rendered and "<img" in rendered
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; crash" in html
    assert '<a class="user-mention" href="/bob">@bob</a>' in html
    assert 'class="issue-link" href="/alice/proj/issues/1"' in html
    # The private repository's issue stays plain text, and its title never appears.
    assert "carol/secret#1" in html and "TOP SECRET" not in html
    assert 'href="/carol/secret/issues/1"' not in html
    # Inside code, nothing is linked.
    assert "<code>@carol #1</code>" in html
    # The template's label came along.
    assert 'data-testid="issue-labels"><span class="issue-label' in html and ">bug</span>" in html

    token = csrf_from(html)
    commented = client.post(
        "/alice/proj/issues/1/comments",
        data={"csrf_token": token, "body": "Fixed it **now**", "action": "close"},
        follow_redirects=False,
    )
    assert commented.status_code == 303 and "#issuecomment-" in commented.headers["location"]
    comment_id = int(commented.headers["location"].rsplit("-", 1)[1])
    closed_page = client.get("/alice/proj/issues/1").text
    assert "<strong>now</strong>" in closed_page and 'data-testid="event-closed"' in closed_page
    assert "Closed" in closed_page and "Reopen issue" in closed_page

    reacted = client.post(
        "/alice/proj/issues/1/reactions",
        data={"csrf_token": token, "content": "rocket", "comment_id": str(comment_id)},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert reacted.status_code == 200 and 'data-testid="reaction-rocket"' in reacted.text
    assert "<html" not in reacted.text

    edited = client.post(
        f"/alice/proj/issues/comments/{comment_id}/edit",
        data={"csrf_token": token, "body": "Fixed it for real"},
        follow_redirects=False,
    )
    assert edited.status_code == 303
    history = client.get(f"/alice/proj/issues/comments/{comment_id}/edit").text
    assert "Edited 1 time" in history and "Fixed it **now**" in history

    listing = client.get("/alice/proj/issues", params={"q": "is:closed label:bug crash"})
    assert 'data-testid="issue-row"' in listing.text and "1 Closed" in listing.text
    assert "Created by me" in listing.text and "label%3A%22good+first+issue%22" in listing.text
    assert 'data-testid="issue-row"' not in client.get("/alice/proj/issues").text
    assert (
        'data-testid="issue-row"'
        not in client.get("/alice/proj/issues", params={"q": "is:closed author:bob"}).text
    )
    css = client.get("/alice/proj/issues/labels.css")
    assert css.headers["content-type"].startswith("text/css") and "#d73a4a" in css.text

    labels = post_form(
        client, "/alice/proj/labels", "/alice/proj/labels", {"name": "infra", "color": "#123456"}
    )
    assert labels.status_code == 303 and ">infra<" in client.get("/alice/proj/labels").text
    milestone = post_form(
        client,
        "/alice/proj/milestones",
        "/alice/proj/milestones",
        {"title": "v1 <b>", "due_on": "2031-02-03"},
    )
    assert milestone.status_code == 303
    milestones = client.get("/alice/proj/milestones").text
    assert "v1 &lt;b&gt;" in milestones and "February 03, 2031" in milestones

    locked = post_form(client, "/alice/proj/issues/1", "/alice/proj/issues/1/lock", {"locked": "1"})
    assert locked.status_code == 303

    # bob was mentioned: his inbox has the thread. The issue is locked: no comment form.
    log_out(client)
    log_in(client, "bob")
    inbox = client.get("/notifications")
    assert inbox.status_code == 200 and 'data-testid="notification"' in inbox.text
    assert "mention" in inbox.text
    bob_page = client.get("/alice/proj/issues/1").text
    assert 'data-testid="comment-form"' not in bob_page and 'data-testid="locked-note"' in bob_page
    blocked = post_form(
        client, "/alice/proj/issues/1", "/alice/proj/issues/1/comments", {"body": "me too"}
    )
    assert blocked.status_code == 303
    assert "me too" not in client.get("/alice/proj/issues/1").text
    # Viewing the issue read the notification.
    assert 'data-testid="notification"' not in client.get("/notifications").text
    assert 'data-testid="notification"' in client.get("/notifications?filter=all").text
    saved = post_form(client, "/settings/notifications", "/settings/notifications", {})
    assert saved.status_code == 303
    assert (
        "checked" not in client.get("/settings/notifications").text.split("email_enabled")[1][:40]
    )
    # A private repository's issues are a 404 to outsiders.
    assert client.get("/carol/secret/issues").status_code == 404
    assert client.get("/carol/secret/issues/1").status_code == 404
    assert client.get("/alice/proj/issues/99").status_code == 404
