"""Work tied to the outcome of a session's transaction.

- `after_commit(session, action)`: run `action()` once the outermost transaction commits.
- `if_not_committed(session, action)`: run `action()` when the outermost transaction ends
  without committing (rolled back, or the session closed without a commit).
- `batch_before_commit(session, key, item, flush)`: collect items through the transaction and
  hand them all to `flush(session, items)` once, just before the outermost transaction commits.

SQLAlchemy sends `before_commit`, `after_commit` and `after_rollback` for SAVEPOINTs as well: a
`session.begin_nested()` block that is released is not the transaction's commit, and one rolled
back is not its rollback. Only the outermost transaction counts here, so work registered by code
that happens to run inside a savepoint (or alongside one) neither runs early at its release nor
is lost at its rollback.

The pending work lives in `session.info` and is dropped when the outermost transaction ends, so
nothing registered in one transaction runs in the next one on the same session. Work registered
while the session has no transaction at all belongs to the next transaction it begins.

The listeners are registered once, on the `Session` class, at import: registering work costs a
dictionary lookup, and a session that registers none pays one per transaction event.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from opencodehub.core.logging import get_logger

log = get_logger("opencodehub.db")

T = TypeVar("T")
Action = Callable[[], None]

_PENDING = "opencodehub.db.transaction"


@dataclass(eq=False)
class _Batch:
    flush: Callable[[Session, list[Any]], None]
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class _Pending:
    after_commit: list[Action] = field(default_factory=list)
    keys: set[Hashable] = field(default_factory=set)
    if_not_committed: list[Action] = field(default_factory=list)
    batches: dict[str, _Batch] = field(default_factory=dict)
    committed: bool = False


def _pending(session: Session) -> _Pending:
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None:
        pending = _Pending()
        session.info[_PENDING] = pending
    return pending


def after_commit(session: Session, action: Action, *, key: Hashable | None = None) -> None:
    """Run `action()` once the outermost transaction of `session` has committed; never at a
    savepoint's release, never if the transaction does not commit. With a `key`, the action is
    registered at most once per transaction (later ones with the same key are ignored).

    The action runs inside SQLAlchemy's `after_commit` event, where the session refuses SQL: it
    must not use the session, and should capture plain values (ids, names) rather than ORM
    objects. An action may register more after-commit work, which runs in the same pass;
    anything else it registers is dropped. An exception is logged and does not stop the other
    actions or fail the commit, which has already happened."""
    pending = _pending(session)
    if key is not None:
        if key in pending.keys:
            return
        pending.keys.add(key)
    pending.after_commit.append(action)


def if_not_committed(session: Session, action: Action) -> None:
    """Run `action()` when the outermost transaction of `session` ends without committing: rolled
    back (a savepoint rolled back inside it does not count) or the session closed first. For undoing
    work done outside the database, such as a directory created for a new record. An exception is
    logged and does not stop the other actions."""
    _pending(session).if_not_committed.append(action)


def batch_before_commit(
    session: Session, key: str, item: T, flush: Callable[[Session, list[T]], None]
) -> None:
    """Add `item` to the transaction's batch `key`. Just before the outermost transaction commits,
    `flush(session, items)` is called once with every item of the batch, in the order they were
    added (the `flush` given first for a key is the one called). The batch is dropped if the
    transaction does not commit; a savepoint rolled back inside it does not drop it.

    `flush` runs inside the transaction and may use the session. An exception from it fails the
    commit, so a flush that must never fail the transaction catches its own errors (and writes in
    a savepoint of its own, so a failed write leaves the transaction usable)."""
    pending = _pending(session)
    batch = pending.batches.get(key)
    if batch is None:
        batch = _Batch(flush)
        pending.batches[key] = batch
    batch.items.append(item)


def has_pending(session: Session) -> bool:
    """True when work waits on the outcome of the session's transaction: the transaction must be
    committed or rolled back, not just closed, even if it seems to have written nothing."""
    pending: _Pending | None = session.info.get(_PENDING)
    return pending is not None and not pending.committed


def _run(actions: list[Action], failure: str) -> None:
    # Iterating the list itself, not a copy: an action that registers another one of the same
    # kind has it run in this same pass.
    for action in actions:
        try:
            action()
        except Exception:
            # The transaction's outcome is settled: a failed action is reported, never raised
            # into the code that committed or rolled back.
            log.exception(failure, action=getattr(action, "__qualname__", repr(action)))


def _outermost_pending(session: Session) -> _Pending | None:
    """The pending work, when the event is the outermost transaction's (SQLAlchemy sends
    `before_commit` and `after_commit` for savepoints too)."""
    if session.in_nested_transaction():
        return None
    return session.info.get(_PENDING)


@event.listens_for(Session, "before_commit")
def _flush_batches(session: Session) -> None:
    pending = _outermost_pending(session)
    if pending is None:
        return
    while pending.batches:
        # Popped before flushing, so a flush that releases a savepoint of its own (or adds to a
        # batch) never sees the same items twice.
        batch = pending.batches.pop(next(iter(pending.batches)))
        batch.flush(session, batch.items)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    pending = _outermost_pending(session)
    if pending is None:
        return
    # Left in place until the transaction's end event, which then knows not to clean up.
    pending.committed = True
    pending.if_not_committed.clear()
    pending.batches.clear()
    _run(pending.after_commit, "after-commit action failed")


@event.listens_for(Session, "after_transaction_end")
def _end_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return
    pending: _Pending | None = session.info.get(_PENDING)
    if pending is None:
        return
    try:
        if not pending.committed:
            _run(pending.if_not_committed, "if-not-committed action failed")
    finally:
        session.info.pop(_PENDING, None)
