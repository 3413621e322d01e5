"""The checked-in migrations reach head on every engine and match the models exactly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from opencodehub.db import migrate as migrations
from opencodehub.db.base import Base
from opencodehub.db.engine import Database


@pytest.fixture
def empty_database(fresh_database_url: str) -> Iterator[Database]:
    database = Database(fresh_database_url, poolclass=sa.pool.NullPool)
    yield database
    database.dispose()


def test_migrations_reach_head_without_drift(empty_database: Database) -> None:
    migrations.upgrade(empty_database)
    assert migrations.is_up_to_date(empty_database)
    with empty_database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], f"models and migrations differ: {differences}"


def test_migrations_downgrade_to_base_and_back(empty_database: Database) -> None:
    migrations.upgrade(empty_database)
    migrations.downgrade(empty_database, "base")
    inspector = sa.inspect(empty_database.engine)
    assert set(inspector.get_table_names()) <= {"alembic_version"}
    migrations.upgrade(empty_database)
    assert migrations.is_up_to_date(empty_database)
