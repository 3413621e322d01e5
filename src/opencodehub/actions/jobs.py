"""Background jobs of Actions (see core/background.py): the push and pull-request consumers
that create runs, the `schedule:` scheduler, and the reaper with the re-enqueue sweep.

Every one may run on several workers at once: runs are unique per trigger, schedule fire times
are trigger keys, and reaping is a state change guarded by the job's status.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opencodehub.actions import service
from opencodehub.core.background import WorkerContext, background_job
from opencodehub.core.logging import get_logger

log = get_logger("opencodehub.actions.jobs")

PUSH_EVENT = "push"
PULL_REQUEST_EVENT = "pull_request"
SCHEDULER_INTERVAL = 20.0
REAPER_INTERVAL = 10.0


def handle_push(context: WorkerContext, payload: dict[str, Any]) -> int:
    with context.database.session() as session:
        return len(service.handle_push(session, context.settings, payload))


def handle_pull_request(context: WorkerContext, payload: dict[str, Any]) -> int:
    with context.database.session() as session:
        return len(service.handle_pull_request(session, context.settings, payload))


async def _consume(context: WorkerContext, event_name: str, handler: Any) -> None:
    async def on_event(payload: dict[str, Any]) -> None:
        try:
            created = await asyncio.to_thread(handler, context, payload)
        except Exception:
            log.exception("workflow runs could not be created", event_name=event_name)
            return
        if created:
            log.info("workflow runs created", event_name=event_name, runs=created)

    unsubscribe = context.events.subscribe(event_name, on_event)
    try:
        await asyncio.Event().wait()
    finally:
        unsubscribe()


@background_job("actions.push")
async def consume_pushes(context: WorkerContext) -> None:
    await _consume(context, PUSH_EVENT, handle_push)


@background_job("actions.pull_request")
async def consume_pull_requests(context: WorkerContext) -> None:
    await _consume(context, PULL_REQUEST_EVENT, handle_pull_request)


def fire_schedules(context: WorkerContext) -> int:
    with context.database.session() as session:
        return service.fire_schedules(session, context.settings)


@background_job("actions.scheduler")
async def scheduler(context: WorkerContext) -> None:
    await context.before_first_round()
    while True:
        try:
            await asyncio.to_thread(fire_schedules, context)
        except Exception:
            log.exception("scheduled workflows could not be fired")
        await asyncio.sleep(SCHEDULER_INTERVAL)


def reap_and_sweep(context: WorkerContext) -> tuple[int, int]:
    with context.database.session() as session:
        reaped = service.reap(session, context.settings)
    with context.database.session() as session:
        swept = service.reenqueue(session, context.settings)
    return reaped, swept


@background_job("actions.reaper")
async def reaper(context: WorkerContext) -> None:
    await context.before_first_round()
    while True:
        try:
            reaped, swept = await asyncio.to_thread(reap_and_sweep, context)
            if reaped or swept:
                log.info("actions jobs reaped or re-enqueued", reaped=reaped, requeued=swept)
        except Exception:
            log.exception("the actions reaper failed")
        await asyncio.sleep(REAPER_INTERVAL)
