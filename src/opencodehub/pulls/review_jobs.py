"""Background job of code review: follow pull request heads.

On the `pull_request` event with action `synchronize` (published by the pulls domain after a
head moved), stale approvals are dismissed where the base branch's rule asks for it and line
comments are moved to the new head or marked outdated. The database decides: the handler reads
the pull request's current head, so a repeated or late event does no harm.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opencodehub.config import Settings
from opencodehub.core.background import WorkerContext, background_job
from opencodehub.core.logging import get_logger
from opencodehub.db.engine import Database
from opencodehub.pulls import reviews
from opencodehub.pulls.models import PullRequest

log = get_logger("opencodehub.reviews.jobs")

PULL_REQUEST_EVENT = "pull_request"


def on_synchronize(database: Database, settings: Settings, payload: dict[str, Any]) -> bool:
    """Handle one `synchronize` payload; True when a pull request was found and processed."""
    pull_request_id = payload.get("pull_request_id")
    if payload.get("action") != "synchronize" or not isinstance(pull_request_id, int):
        return False
    with database.session() as session:
        pull_request = session.get(PullRequest, pull_request_id)
        if pull_request is None:
            return False
        reviews.head_moved(session, settings, pull_request)
    return True


@background_job("reviews.synchronize")
async def follow_heads(context: WorkerContext) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def enqueue(payload: dict[str, Any]) -> None:
        await queue.put(payload)

    unsubscribe = context.events.subscribe(PULL_REQUEST_EVENT, enqueue)
    try:
        while True:
            payload = await queue.get()
            try:
                await asyncio.to_thread(on_synchronize, context.database, context.settings, payload)
            except Exception:
                log.exception("review follow-up of a moved head failed", payload=payload)
    finally:
        unsubscribe()
