"""The `notification-email` background job: sends queued notification email.

It wakes as soon as a transaction that queued email commits in this process (the embedded
mode), and otherwise polls, so a separate worker process still sends within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib

from opencodehub.core.background import WorkerContext, background_job
from opencodehub.core.logging import get_logger
from opencodehub.notifications import mail, service

log = get_logger("opencodehub.notifications.jobs")

POLL_SECONDS = 5.0
IDLE_POLL_SECONDS = 300.0  # without SMTP only the outbox clean-up runs


@background_job("notification-email")
async def notification_email(context: WorkerContext) -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    remove = service.add_email_waker(lambda: loop.call_soon_threadsafe(wake.set))
    poll = POLL_SECONDS if context.settings.smtp_host else IDLE_POLL_SECONDS
    try:
        await context.before_first_round()
        while True:
            wake.clear()
            handled = await asyncio.to_thread(
                mail.deliver_pending, context.settings, context.database
            )
            if handled >= mail.BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll)
    finally:
        remove()
