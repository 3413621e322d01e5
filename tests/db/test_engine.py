"""The engine's transactions behave alike on every engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from opencodehub.db.engine import Database


@pytest.fixture
def scratch(db: Database) -> Iterator[None]:
    """A table of the test's own, outside the models."""
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS och_scratch")
        connection.exec_driver_sql("CREATE TABLE och_scratch (x INTEGER)")
    yield
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE och_scratch")


def _rows(db: Database) -> list[int]:
    with db.engine.connect() as connection:
        return sorted(row[0] for row in connection.exec_driver_sql("SELECT x FROM och_scratch"))


def test_a_rollback_undoes_what_a_savepoint_wrote_before_any_other_write(
    db: Database, scratch: None
) -> None:
    with Session(db.engine) as session:
        session.begin()
        with session.begin_nested():
            session.execute(sa.text("INSERT INTO och_scratch VALUES (1)"))
        session.execute(sa.text("INSERT INTO och_scratch VALUES (2)"))
        session.rollback()
    assert _rows(db) == []


def test_a_savepoint_rolled_back_keeps_the_rest_of_the_transaction(
    db: Database, scratch: None
) -> None:
    with Session(db.engine) as session, session.begin():
        with pytest.raises(RuntimeError), session.begin_nested():
            session.execute(sa.text("INSERT INTO och_scratch VALUES (1)"))
            raise RuntimeError("undo the savepoint")
        session.execute(sa.text("INSERT INTO och_scratch VALUES (2)"))
    assert _rows(db) == [2]


def test_reads_before_a_write_on_sqlite_open_no_transaction(tmp_path: Path) -> None:
    """Reads stay outside a transaction until the first write (or savepoint): a SQLite reader
    then holds no snapshot that a concurrent writer's commit would invalidate."""
    db = Database(f"sqlite:///{tmp_path / 'reads.db'}")
    try:
        with Session(db.engine) as session:
            session.execute(sa.text("SELECT 1"))
            assert not session.connection().connection.dbapi_connection.in_transaction
            with session.begin_nested():
                assert session.connection().connection.dbapi_connection.in_transaction
    finally:
        db.dispose()
