"""The issues service against the database: numbering, closing keywords, comments."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select

from opencodehub.accounts.models import Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound
from opencodehub.db.engine import Database
from opencodehub.issues import service
from opencodehub.issues.models import Issue
from opencodehub.repos.models import Repository
from tests.issues.conftest import RepoWorld, actor, add_collaborator, private_repo


def _load(session, world: RepoWorld) -> tuple[User, Repository]:
    owner = session.get(User, world.owner.id)
    repo = session.get(Repository, world.repo.id)
    assert owner is not None and repo is not None
    return owner, repo


def test_numbers_are_shared_and_unique_under_concurrency(db: Database, world: RepoWorld) -> None:
    errors: list[BaseException] = []

    def create(index: int) -> None:
        try:
            with db.session() as session:
                owner, repo = _load(session, world)
                service.create_issue_record(
                    session, repo, owner, f"issue {index}", "", is_pull_request=index % 2 == 1
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.session() as session:
        numbers = sorted(session.scalars(select(Issue.number)))
    assert numbers == [1, 2, 3, 4, 5, 6]


def test_close_by_keywords_only_where_actor_may_write(
    db: Database, settings: Settings, world: RepoWorld, make_user: Callable[..., User]
) -> None:
    stranger = make_user("stranger")
    other = private_repo(db, settings, stranger, "secret")
    with db.session() as session:
        owner, repo = _load(session, world)
        mine = service.create_issue_record(session, repo, owner, "mine", "")
        pr = service.create_issue_record(session, repo, owner, "a pr", "", is_pull_request=True)
        stranger_row = session.get(User, stranger.id)
        other_row = session.get(Repository, other.id)
        theirs = service.create_issue_record(session, other_row, stranger_row, "theirs", "")
        closed = service.close_by_keywords(
            session,
            repo,
            actor(owner),
            [
                f"Fixes #{mine.number}, closes #{pr.number}",
                "resolves stranger/secret#1",
                "`fixes #1`",
            ],
            closed_by_user=owner,
        )
        assert [issue.id for issue in closed] == [mine.id]
        assert mine.state == "closed" and mine.state_reason == "completed"
        assert mine.closed_by_id == owner.id
        assert pr.state == "open" and theirs.state == "open"


def test_locked_issue_takes_comments_from_writers_only(
    db: Database, world: RepoWorld, make_user: Callable[..., User]
) -> None:
    reader = make_user("reader")
    writer = make_user("writer")
    add_collaborator(db, world.repo, world.owner, writer, Permission.WRITE)
    with db.session() as session:
        owner, repo = _load(session, world)
        issue = service.create_issue_record(session, repo, owner, "hot topic", "")
        issue.locked = True
        session.flush()
        with pytest.raises(Forbidden):
            service.add_comment(session, actor(session.get(User, reader.id)), repo, issue, "me too")
        comment = service.add_comment(
            session, actor(session.get(User, writer.id)), repo, issue, "calm down"
        )
        assert comment.id and issue.comments_count == 1
        with pytest.raises(NotFound):
            service.get_issue(session, repo, 99)
