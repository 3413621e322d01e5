"""The server process: its event loop and its migration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opencodehub import serve
from opencodehub.config import Settings
from opencodehub.db import migrate as migrations
from opencodehub.db.engine import Database


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_server_runs_on_uvloop_when_installed() -> None:
    assert serve.run_event_loop(_loop_module()).startswith("uvloop")


def test_without_uvloop_the_server_runs_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert serve.run_event_loop(_loop_module()).startswith("asyncio")


def test_the_migration_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    settings.data_dir.mkdir()
    migration = serve.start_migration(settings)
    serve.finish_migration(migration)
    database = Database(settings.effective_database_url)
    try:
        assert migrations.is_up_to_date(database)
    finally:
        database.dispose()


def test_a_failed_migration_stops_the_server(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url="postgresql://nobody@127.0.0.1:1/unreachable",  # nothing listens on port 1
        _env_file=None,
    )
    migration = serve.start_migration(settings)
    with pytest.raises(SystemExit, match="could not be migrated"):
        serve.finish_migration(migration)
