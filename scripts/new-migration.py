"""Autogenerate an Alembic migration from the models: `python scripts/new-migration.py "message"`.

Runs against a scratch SQLite database brought to the current head, so the diff is exactly what
the models add.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from opencodehub.db import migrate as migrations
from opencodehub.db.engine import Database


def main() -> None:
    message = sys.argv[1] if len(sys.argv) > 1 else "update schema"
    with tempfile.TemporaryDirectory() as scratch:
        database = Database(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        migrations.upgrade(database)
        command.revision(
            migrations.alembic_config(database), message=message, autogenerate=True
        )
        database.dispose()


if __name__ == "__main__":
    main()
