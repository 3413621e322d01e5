"""Background jobs of this domain (see core/background.py).

`pull-requests` follows the `push` events: a push to a pull request's head synchronizes it
(fetching the commits into the base repository, recording force pushes), and a push to its head
or base recomputes its mergeability in memory and moves `refs/pull/{n}/merge` (the test merge
`pull_request` workflows run on). It also polls, every few seconds, the open pull
requests with auto-merge on and merges those whose branch protection is now satisfied (reviews
and commit statuses change without a push, and a poll needs no event from either). Every step
re-reads the database, so running it on several workers at once is safe: the merge itself is a
compare-and-swap on the base branch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pygit2

from opencodehub.config import Settings
from opencodehub.core.background import WorkerContext, background_job
from opencodehub.core.logging import get_logger
from opencodehub.pulls import merge, service
from opencodehub.pulls.models import PullRequest
from opencodehub.repos import forks, store

log = get_logger("opencodehub.pulls.jobs")

AUTO_MERGE_POLL_SECONDS = 3.0


def process_push(context: WorkerContext, payload: dict[str, Any]) -> int:
    """Handle one `push` event; returns how many pull requests it touched."""
    repository_id = payload.get("repository_id")
    if not isinstance(repository_id, int):
        return 0
    refs = [
        update.get("ref", "")
        for update in payload.get("updates", [])
        if isinstance(update, dict) and isinstance(update.get("ref"), str)
    ]
    pusher_id = payload.get("pusher_id")
    with context.database.session() as session:
        touched = service.handle_push(
            session,
            context.settings,
            repository_id,
            refs,
            pusher_id if isinstance(pusher_id, int) else None,
            events=context.events,
        )
        for pull in touched:
            refresh_test_merge(context.settings, pull)
        merged = 0
        for pull in touched:
            if pull.auto_merge_method and service.try_auto_merge(
                session, context.settings, pull, events=context.events
            ):
                merged += 1
        return len(touched) + merged


def refresh_test_merge(settings: Settings, pull: PullRequest) -> str | None:
    """Move `refs/pull/{n}/merge` to the test merge of the head into the base's tip (or
    remove it when they conflict); what `pull_request` workflows run on. Never raises: a
    failure here must not stop the push handling."""
    if not pull.is_open or pull.merged:
        return None
    try:
        git = store.open_repository(settings, pull.repository_id)
        base = git.references.get(f"refs/heads/{pull.base_ref}")
        if base is None:
            return None
        base_sha = str(base.peel(pygit2.Commit).id)
        return merge.update_test_merge(
            settings, pull.repository_id, pull.number, base_sha, pull.head_sha
        )
    except Exception:
        log.exception("the test merge could not be written", pull_request_id=pull.id)
        return None


def poll_auto_merge(context: WorkerContext) -> int:
    """Try every open pull request with auto-merge on; returns how many merged."""
    merged = 0
    with context.database.session() as session:
        candidates = service.auto_merge_candidates(session)
    for pull_id in candidates:
        try:
            with context.database.session() as session:
                pull = session.get(PullRequest, pull_id)
                if pull is None:
                    continue
                if service.try_auto_merge(session, context.settings, pull, events=context.events):
                    merged += 1
        except Exception:
            log.exception("auto-merge attempt failed", pull_request_id=pull_id)
    return merged


@background_job("pull-requests")
async def pull_requests_job(context: WorkerContext) -> None:
    forks.remember_settings(context.settings)

    async def on_push(payload: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(process_push, context, payload)
        except Exception:
            log.exception("push handling for pull requests failed")

    unsubscribe = context.events.subscribe("push", on_push)
    try:
        while True:
            await asyncio.sleep(AUTO_MERGE_POLL_SECONDS)
            try:
                await asyncio.to_thread(poll_auto_merge, context)
            except Exception:
                log.exception("auto-merge poll failed")
    finally:
        unsubscribe()
