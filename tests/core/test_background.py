"""Periodic background jobs wait their context's start delay; event consumers never wait."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opencodehub import app as app_module
from opencodehub.config import Settings
from opencodehub.core.background import WorkerContext
from opencodehub.core.events import EventBus
from opencodehub.db.engine import Database
from opencodehub.issues import jobs as issue_jobs
from opencodehub.repos import jobs as repo_jobs
from tests.conftest import database_with_tables


def _context(tmp_path: Path, delay: float) -> WorkerContext:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'och.db'}",
        secret_key="test-secret-key-0123456789abcdef",
        _env_file=None,
    )
    return WorkerContext(
        settings, Database(settings.database_url), EventBus(), periodic_start_delay=delay
    )


async def _first_sweep_after(context: WorkerContext, monkeypatch: pytest.MonkeyPatch) -> float:
    swept = asyncio.Event()
    monkeypatch.setattr(repo_jobs, "sweep_lfs_uploads", lambda settings: swept.set() or 0)
    started = time.monotonic()
    job = asyncio.create_task(repo_jobs.lfs_upload_sweep_job(context, interval=60))
    try:
        await asyncio.wait_for(swept.wait(), timeout=10)
        return time.monotonic() - started
    finally:
        job.cancel()


def test_a_periodic_job_begins_after_the_start_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert asyncio.run(_first_sweep_after(_context(tmp_path, 0.0), monkeypatch)) < 0.3
    assert asyncio.run(_first_sweep_after(_context(tmp_path, 0.6), monkeypatch)) >= 0.6


def test_an_event_consumer_hears_events_published_during_the_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = _context(tmp_path, 30.0)
    heard: list[dict[str, Any]] = []
    monkeypatch.setattr(
        issue_jobs, "handle_push", lambda settings, database, payload: heard.append(payload)
    )

    async def scenario() -> None:
        job = asyncio.create_task(issue_jobs.issue_closing_keywords(context))
        await asyncio.sleep(0.05)
        context.events.publish(issue_jobs.PUSH_EVENT, {"repository_id": 7})
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        job.cancel()

    asyncio.run(scenario())
    context.events.close()
    assert heard == [{"repository_id": 7}]


def test_the_serving_app_delays_its_periodic_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts: list[WorkerContext] = []

    async def run_jobs(context: WorkerContext) -> None:
        contexts.append(context)

    monkeypatch.setattr(app_module, "run_jobs", run_jobs)
    settings = _context(tmp_path, 0.0).settings
    with (
        database_with_tables(settings.database_url) as database,
        TestClient(app_module.create_app(settings, database)),
    ):
        pass
    assert [context.periodic_start_delay for context in contexts] == [
        app_module.PERIODIC_JOBS_START_DELAY_SECONDS
    ]
    assert app_module.PERIODIC_JOBS_START_DELAY_SECONDS > 0
