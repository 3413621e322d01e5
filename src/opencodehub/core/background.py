"""Background jobs: long-running coroutines owned by the worker role.

A domain registers its jobs with `@background_job("name")` in its `jobs.py` (consuming events from
the bus, scheduling, reaping, clean-up). `opencodehub worker` runs every registered job; in embedded
mode (`OCH_RUN_BACKGROUND_JOBS`, on by default) the app runs them in its own event loop, so one
command on a laptop still has CI scheduling and merge checks. In production the app nodes turn the
flag off and one or more `opencodehub worker` processes run them; a job that may run on several
workers at once must be idempotent (the database decides, never the event).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from opencodehub.config import Settings
from opencodehub.core.events import EventBus
from opencodehub.core.logging import get_logger
from opencodehub.db.engine import Database

log = get_logger("opencodehub.background")

# Every domain that has background jobs; importing the module registers them.
JOB_MODULES = (
    "opencodehub.repos.jobs",
    "opencodehub.issues.jobs",
    "opencodehub.notifications.jobs",
    "opencodehub.pulls.jobs",
    "opencodehub.pulls.review_jobs",
    "opencodehub.actions.jobs",
)
RESTART_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    database: Database
    events: EventBus
    # Seconds the periodic jobs wait before their first round (sweeps, the CI scheduler and
    # reaper, mail delivery). Event consumers subscribe at once either way, so nothing published
    # meanwhile is missed.
    periodic_start_delay: float = 0.0

    async def before_first_round(self) -> None:
        """A periodic job calls this before its first round: inside a serving process the
        first rounds (a handful of queries on worker threads) would otherwise compete with
        its first requests, and delay its readiness by 0.1-0.2 s."""
        if self.periodic_start_delay > 0:
            await asyncio.sleep(self.periodic_start_delay)


BackgroundJob = Callable[[WorkerContext], Awaitable[None]]
_JOBS: dict[str, BackgroundJob] = {}


def background_job(name: str) -> Callable[[BackgroundJob], BackgroundJob]:
    """Register a coroutine function to run for the life of the worker."""

    def register(job: BackgroundJob) -> BackgroundJob:
        if name in _JOBS and _JOBS[name] is not job:
            raise ValueError(f"background job {name!r} is registered twice")
        _JOBS[name] = job
        return job

    return register


def registered_jobs() -> dict[str, BackgroundJob]:
    for module in JOB_MODULES:
        importlib.import_module(module)
    return dict(_JOBS)


async def _supervise(name: str, job: BackgroundJob, context: WorkerContext) -> None:
    """Run a job; if it crashes, log and restart it, so one bug never stops the others."""
    while True:
        try:
            await job(context)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job crashed; restarting", job=name)
            await asyncio.sleep(RESTART_DELAY_SECONDS)


async def run_jobs(context: WorkerContext, names: list[str] | None = None) -> None:
    """Run the registered jobs (or the named ones) until cancelled."""
    jobs = registered_jobs()
    selected = {name: jobs[name] for name in (names or sorted(jobs))}
    async with asyncio.TaskGroup() as group:
        for name, job in selected.items():
            group.create_task(_supervise(name, job, context), name=f"background:{name}")
