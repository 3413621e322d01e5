"""Against a live server: closing keywords in a real `git push`, and GitHub's own client."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.issues import service
from opencodehub.issues.models import Issue, IssueEvent
from opencodehub.repos.models import Repository
from tests.conftest import LiveServer
from tests.git.gitutil import commit, create_repo, repo_url, run_git


def _wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.slow
def test_closing_keywords_in_pushed_commits_close_issues(
    live_server: LiveServer,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, "proj", auto_init=True)
    with db.session() as session:
        owner = session.get(User, alice.id)
        record = session.get(Repository, repo.id)
        assert owner is not None and record is not None
        for title in ("fixed on main", "mentioned only", "fixed on a branch"):
            service.create_issue_record(session, record, owner, title, "")
    home = tmp_path / "home"
    work = tmp_path / "work"
    url = repo_url(live_server.url, "alice", "proj", "alice")
    run_git("clone", "-q", url, str(work), cwd=tmp_path, home=home)
    run_git("checkout", "-q", "-b", "topic", cwd=work, home=home)
    commit(work, home, {"b.txt": "b"}, "Work in progress\n\nFixes #3")
    run_git("push", "-q", "origin", "topic", cwd=work, home=home)
    run_git("checkout", "-q", "main", cwd=work, home=home)
    sha = commit(work, home, {"a.txt": "a"}, "Handle empty input\n\nFixes #1, see #2")
    run_git("push", "-q", "origin", "main", cwd=work, home=home)

    def state(number: int) -> str:
        with db.session() as session:
            issue = session.query(Issue).filter_by(repository_id=repo.id, number=number).one()
            return issue.state

    assert _wait_for(lambda: state(1) == "closed")
    with db.session() as session:
        closed = session.query(Issue).filter_by(repository_id=repo.id, number=1).one()
        assert closed.closed_by_id == alice.id and closed.state_reason == "completed"
        events = {
            (row.issue_id, row.event)
            for row in session.query(IssueEvent).filter(IssueEvent.data.contains(sha))
        }
        mentioned = session.query(Issue).filter_by(repository_id=repo.id, number=2).one()
        assert (closed.id, "closed") in events and (mentioned.id, "referenced") in events
    # Not on the default branch, and only mentioned: still open.
    assert state(2) == "open" and state(3) == "open"


@pytest.mark.slow
def test_pygithub_issue_round_trip(
    live_server: LiveServer,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    """GitHub's own Python client, unchanged: create, comment, label, close."""
    from github import Auth, Github

    alice = make_user("alice")
    create_repo(db, settings, alice, "proj")
    gh = Github(
        base_url=f"{live_server.url}/api/v3",
        auth=Auth.Token(make_token(alice)),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    project = gh.get_repo("alice/proj")
    issue = project.create_issue("Broken build", body="Steps: run `make`")
    assert issue.number == 1 and issue.user.login == "alice"
    comment = issue.create_comment("Looking into it")
    assert comment.body == "Looking into it" and comment.user.login == "alice"
    issue.add_to_labels("bug")
    assert [label.name for label in issue.get_labels()] == ["bug"]
    issue.edit(state="closed", state_reason="completed")
    fetched = project.get_issue(1)
    assert fetched.state == "closed" and fetched.comments == 1
    assert [label.name for label in fetched.labels] == ["bug"]
    assert [c.body for c in fetched.get_comments()] == ["Looking into it"]
    assert [i.number for i in project.get_issues(state="closed")] == [1]
    assert project.get_label("bug").color == "d73a4a"
    milestone = project.create_milestone("v1")
    assert project.get_milestone(milestone.number).title == "v1"
