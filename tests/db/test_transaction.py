"""Work tied to the outcome of a session's transaction: only the outermost transaction's commit or
rollback counts, never a savepoint's, on every engine."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.core import logging as och_logging
from opencodehub.core.events import EventBus, Payload
from opencodehub.db import transaction
from opencodehub.db.engine import Database
from opencodehub.repos import pushes, store
from opencodehub.repos import service as repos
from opencodehub.repos.models import Repository
from opencodehub.repos.pushes import RefUpdate
from tests.git.gitutil import create_repo

ZERO = "0" * 40


class Flushes:
    """A batch's flush that records the items of each call."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, _session: Session, items: list[str]) -> None:
        self.batches.append(list(items))


class Abort(Exception):
    pass


@pytest.fixture
def new_session(db: Database) -> Iterator[Callable[[], Session]]:
    opened: list[Session] = []

    def make() -> Session:
        session = db.sessionmaker()
        opened.append(session)
        return session

    yield make
    for session in opened:
        session.close()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    och_logging.set_stream(buffer)
    yield buffer
    och_logging.set_stream(None)


def _savepoint(session: Session) -> None:
    """A savepoint that is released, as `session.begin_nested()` blocks in the services are."""
    with session.begin_nested():
        session.execute(select(1))


def _recorder(ran: list[str], name: str) -> Callable[[], None]:
    return lambda: ran.append(name)


def test_after_commit_runs_once_at_the_outermost_commit_not_at_a_savepoint_release(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    with session.begin():
        transaction.after_commit(session, _recorder(ran, "before"))
        _savepoint(session)
        assert ran == []
        with session.begin_nested():
            transaction.after_commit(session, _recorder(ran, "inside"))
        _savepoint(session)
        assert ran == []
    assert ran == ["before", "inside"]
    session.commit()
    with session.begin():
        _savepoint(session)
    assert ran == ["before", "inside"]


def test_session_commit_with_a_savepoint_still_open_runs_the_work_once(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    session.execute(select(1))
    session.begin_nested()
    transaction.after_commit(session, _recorder(ran, "work"))
    session.commit()  # releases the savepoint, then commits the transaction
    assert ran == ["work"]


def test_rollback_after_a_released_savepoint_runs_only_the_clean_up(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    flush = Flushes()
    with pytest.raises(Abort), session.begin():
        transaction.after_commit(session, _recorder(ran, "after commit"))
        transaction.if_not_committed(session, _recorder(ran, "clean up"))
        transaction.batch_before_commit(session, "k", "item", flush)
        _savepoint(session)
        assert ran == []
        raise Abort
    assert ran == ["clean up"]
    assert flush.batches == []


def test_session_rollback_with_a_savepoint_open_and_session_close_count_as_not_committed(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    session.execute(select(1))
    session.begin_nested()
    transaction.after_commit(session, _recorder(ran, "after commit"))
    transaction.if_not_committed(session, _recorder(ran, "rolled back"))
    session.rollback()
    assert ran == ["rolled back"]

    closed = new_session()
    closed.execute(select(1))
    transaction.after_commit(closed, _recorder(ran, "after commit"))
    transaction.if_not_committed(closed, _recorder(ran, "closed"))
    closed.close()
    assert ran == ["rolled back", "closed"]
    closed.commit()
    assert ran == ["rolled back", "closed"]


def test_a_rolled_back_savepoint_does_not_drop_pending_work(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    flush = Flushes()
    with session.begin():
        transaction.after_commit(session, _recorder(ran, "outer"))
        transaction.if_not_committed(session, _recorder(ran, "clean up"))
        transaction.batch_before_commit(session, "k", "a", flush)
        with pytest.raises(Abort), session.begin_nested():
            transaction.after_commit(session, _recorder(ran, "in savepoint"))
            transaction.batch_before_commit(session, "k", "b", flush)
            session.execute(select(1))
            raise Abort
        nested = session.begin_nested()
        session.execute(select(1))
        nested.rollback()
        assert ran == [] and flush.batches == []
    assert ran == ["outer", "in savepoint"]
    assert flush.batches == [["a", "b"]]


def test_keyed_after_commit_runs_once_per_transaction(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    with session.begin():
        transaction.after_commit(session, _recorder(ran, "first"), key="wake")
        _savepoint(session)
        with session.begin_nested():
            transaction.after_commit(session, _recorder(ran, "second"), key="wake")
        transaction.after_commit(session, _recorder(ran, "other key"), key="other")
    assert ran == ["first", "other key"]
    with session.begin():
        transaction.after_commit(session, _recorder(ran, "next transaction"), key="wake")
        transaction.after_commit(session, _recorder(ran, "again"), key="wake")
    assert ran == ["first", "other key", "next transaction"]


def test_work_does_not_leak_into_the_next_transaction(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    flush = Flushes()
    with pytest.raises(Abort), session.begin():
        transaction.after_commit(session, _recorder(ran, "rolled back"), key="k")
        transaction.batch_before_commit(session, "batch", "rolled back", flush)
        _savepoint(session)
        raise Abort
    with session.begin():
        transaction.after_commit(session, _recorder(ran, "committed"), key="k")
        transaction.if_not_committed(session, _recorder(ran, "clean up"))
        transaction.batch_before_commit(session, "batch", "committed", flush)
    with pytest.raises(Abort), session.begin():
        _savepoint(session)
        raise Abort
    with session.begin():
        _savepoint(session)
    assert ran == ["committed"]
    assert flush.batches == [["committed"]]


def test_after_commit_work_registered_by_an_action_runs_in_the_same_commit(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        transaction.after_commit(session, _recorder(ran, "second"))

    with session.begin():
        transaction.after_commit(session, first)
    assert ran == ["first", "second"]
    with session.begin():
        _savepoint(session)
    assert ran == ["first", "second"]


def test_an_action_that_raises_is_logged_and_does_not_stop_the_others(
    new_session: Callable[[], Session], log_lines: io.StringIO
) -> None:
    session = new_session()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("disk on fire")

    with session.begin():
        transaction.after_commit(session, broken)
        transaction.after_commit(session, _recorder(ran, "after commit"))
    with pytest.raises(Abort), session.begin():
        transaction.if_not_committed(session, broken)
        transaction.if_not_committed(session, _recorder(ran, "clean up"))
        raise Abort
    assert ran == ["after commit", "clean up"]
    output = log_lines.getvalue()
    assert "after-commit action failed" in output
    assert "if-not-committed action failed" in output
    assert output.count("RuntimeError: disk on fire") == 2


def test_batch_flush_sees_every_item_in_order_once_before_the_commit(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    ran: list[str] = []
    flushes: list[tuple[str, list[int]]] = []

    def flush(name: str) -> Callable[[Session, list[int]], None]:
        def write(flushing: Session, items: list[int]) -> None:
            # Inside the transaction, before its commit: SQL works, in a savepoint of its own
            # (whose release must not flush again), and no after-commit work has run yet.
            with flushing.begin_nested():
                assert flushing.execute(select(1)).scalar_one() == 1
            assert ran == []
            flushes.append((name, list(items)))

        return write

    with session.begin():
        transaction.after_commit(session, _recorder(ran, "after commit"))
        transaction.batch_before_commit(session, "statuses", 1, flush("statuses"))
        _savepoint(session)
        transaction.batch_before_commit(session, "others", 10, flush("others"))
        with session.begin_nested():
            transaction.batch_before_commit(session, "statuses", 2, flush("statuses"))
        transaction.batch_before_commit(session, "statuses", 3, flush("unused"))
        assert flushes == []
    assert flushes == [("statuses", [1, 2, 3]), ("others", [10])]
    assert ran == ["after commit"]
    session.commit()
    assert len(flushes) == 2


def test_has_pending_while_work_waits_on_the_transaction(
    new_session: Callable[[], Session],
) -> None:
    session = new_session()
    assert not transaction.has_pending(session)
    with session.begin():
        transaction.if_not_committed(session, lambda: None)
        _savepoint(session)
        assert transaction.has_pending(session)
    assert not transaction.has_pending(session)
    with pytest.raises(Abort), session.begin():
        transaction.after_commit(session, lambda: None)
        assert transaction.has_pending(session)
        raise Abort
    assert not transaction.has_pending(session)


# At the call sites ------------------------------------------------------------------------------


def _actor(session: Session, user: User) -> Actor:
    account = session.get(User, user.id)
    assert account is not None
    return Actor(user=account, method="password")


def test_deleted_repository_keeps_its_directory_when_the_transaction_rolls_back_after_a_savepoint(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, "kept", auto_init=True)
    path = store.repository_path(settings, repo.id)
    with pytest.raises(Abort), db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        repos.delete_repository(session, settings, _actor(session, alice), record)
        _savepoint(session)
        assert path.is_dir()
        raise Abort
    assert path.is_dir()
    with db.session() as session:
        assert session.get(Repository, repo.id) is not None

    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        repos.delete_repository(session, settings, _actor(session, alice), record)
        _savepoint(session)
        assert path.is_dir()
    assert not path.exists()


def test_created_repository_directory_is_removed_when_the_transaction_rolls_back_after_a_savepoint(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    alice = make_user("alice")
    with pytest.raises(Abort), db.session() as session:
        actor = _actor(session, alice)
        repo = repos.create_repository(session, settings, actor, actor.user, "gone")
        path = store.repository_path(settings, repo.id)
        _savepoint(session)
        assert path.is_dir()
        raise Abort
    assert not path.exists()


class RecordingBus(EventBus):
    """Records what is published, synchronously, from the publishing thread."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, Payload]] = []

    def publish(self, event_name: str, payload: Payload) -> None:
        self.published.append((event_name, payload))


def test_push_event_is_published_at_the_commit_not_at_a_savepoint_release(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    alice = make_user("alice")
    repo = create_repo(db, settings, alice, "pushy", auto_init=True)
    sha = str(store.open_repository(settings, repo.id).head.target)
    bus = RecordingBus()
    seen_at_commit: list[Any] = []
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        pushes.record_push(
            session, settings, record, alice, [RefUpdate("refs/heads/main", ZERO, sha)], events=bus
        )
        _savepoint(session)
        _savepoint(session)
        seen_at_commit.extend(bus.published)
    assert seen_at_commit == []
    assert [name for name, _payload in bus.published] == [pushes.PUSH_EVENT]
    assert bus.published[0][1]["repository"] == "alice/pushy"
