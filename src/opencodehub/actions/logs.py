"""Job logs: numbered lines in the database while a job runs, one object in storage after.

Runners send lines in batches numbered from 0; a line whose number the server already holds is
ignored, so a batch sent again after a timeout changes nothing. When the job completes its lines
move to object storage under `logs/{job}` (JSON lines `[step, text]`), and the rows are deleted.

Live viewers are woken by a notification per job: Redis pub/sub (`och:actions:log:{job}`) when
Redis is configured, so any app node can stream any job, or an in-process hub otherwise. The
notification carries nothing the database does not: a woken reader re-reads the new lines.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencodehub.actions.models import JobLogLine, WorkflowJob
from opencodehub.config import Settings
from opencodehub.core.logging import get_logger
from opencodehub.runner.protocol import LogLine

log = get_logger("opencodehub.actions.logs")

CHANNEL_PREFIX = "och:actions:log:"
READ_BATCH = 5000

# Statements built once (building one costs more than running it on SQLite), on the table.
_LINES = JobLogLine.__table__
_COUNT_AND_HIGHEST = select(func.count(), func.max(_LINES.c.idx)).where(
    _LINES.c.job_id == bindparam("job_id")
)
_INDICES = select(_LINES.c.idx).where(_LINES.c.job_id == bindparam("job_id")).order_by(_LINES.c.idx)
_READ_AFTER = (
    select(_LINES.c.idx, _LINES.c.step, _LINES.c.text)
    .where(_LINES.c.job_id == bindparam("job_id"), _LINES.c.idx > bindparam("after"))
    .order_by(_LINES.c.idx)
    .limit(READ_BATCH)
)
_DELETE = _LINES.delete().where(_LINES.c.job_id == bindparam("job_id"))
_INSERT_SKIPPING: dict[str, Any] = {}  # per dialect: INSERT ... ON CONFLICT DO NOTHING


@dataclass(frozen=True)
class Line:
    idx: int
    step: int | None
    text: str


def storage_key(job_id: int) -> str:
    return f"logs/{job_id}"


def append(session: Session, job: WorkflowJob, start: int, lines: Sequence[LogLine]) -> int:
    """Store lines `start`…; returns how many consecutive lines from 0 the job now has."""
    # What the request changed on the job (its lease) is written first, as a query would: its
    # row is locked before the lines are, whichever way they are inserted.
    session.flush()
    if lines:
        rows = [
            {"job_id": job.id, "idx": idx, "step": line.step, "text": line.text.replace("\x00", "")}
            for idx, line in enumerate(lines, start)
        ]
        if not _insert_missing(session, rows):
            _insert_checked(session, job, start, rows)
    return _contiguous(session, job)


def _insert_missing(session: Session, rows: list[dict[str, Any]]) -> bool:
    """Insert the rows whose index the job does not hold yet, in one statement where the engine
    can skip duplicates itself (SQLite, PostgreSQL); False elsewhere."""
    statement = _INSERT_SKIPPING.get(session.get_bind().dialect.name)
    if statement is None:
        dialect = session.get_bind().dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            return False
        statement = _INSERT_SKIPPING[dialect] = dialect_insert(_LINES).on_conflict_do_nothing()
    session.execute(statement, rows)
    return True


def _insert_checked(
    session: Session, job: WorkflowJob, start: int, rows: list[dict[str, Any]]
) -> None:
    """The same, reading which indices the job holds first (MariaDB's INSERT IGNORE would also
    hide other errors)."""
    stop = start + len(rows)
    for _attempt in range(3):
        have = set(
            session.scalars(
                select(JobLogLine.idx).where(
                    JobLogLine.job_id == job.id, JobLogLine.idx >= start, JobLogLine.idx < stop
                )
            )
        )
        missing = [row for row in rows if row["idx"] not in have]
        if not missing:
            return
        try:
            with session.begin_nested():
                session.execute(insert(_LINES), missing)
            return
        except IntegrityError:
            continue  # the same batch arrived twice at once; the next pass skips its lines


def _contiguous(session: Session, job: WorkflowJob) -> int:
    """Lines 0…n-1 all present: n. Batches may arrive out of order after a retry."""
    count, highest = session.execute(_COUNT_AND_HIGHEST, {"job_id": job.id}).one()
    if highest is None:
        job.log_lines = 0
        return 0
    if highest + 1 == count:
        job.log_lines = count
        return count
    indices = session.scalars(_INDICES, {"job_id": job.id})
    expected = 0
    for idx in indices:
        if idx != expected:
            break
        expected += 1
    job.log_lines = expected
    return expected


def read(session: Session, settings: Settings, job: WorkflowJob, after: int = -1) -> list[Line]:
    """The job's lines with an index above `after`, from the database or storage."""
    if job.log_key:
        return [line for line in _read_archived(settings, job) if line.idx > after]
    rows = session.execute(_READ_AFTER, {"job_id": job.id, "after": after}).all()
    return [Line(idx, step, text) for idx, step, text in rows]


def _read_archived(settings: Settings, job: WorkflowJob) -> list[Line]:
    from opencodehub.storage.base import ObjectNotFound
    from opencodehub.storage.factory import build_storage

    storage = build_storage(settings)
    try:
        data = b"".join(storage.get(job.log_key or storage_key(job.id)))
    except ObjectNotFound:
        return []
    finally:
        storage.close()
    lines = []
    for idx, raw in enumerate(data.decode("utf-8", "replace").splitlines()):
        step, text = json.loads(raw)
        lines.append(Line(idx, step, text))
    return lines


def archive(
    session: Session,
    settings: Settings,
    job: WorkflowJob,
    tail_start: int = 0,
    tail: Sequence[LogLine] = (),
) -> None:
    """Move a finished job's lines to object storage; the rows go once the object is written.
    `tail` (lines `tail_start`…, the last ones, which the completion carries) goes straight into
    the object instead of through the table; a line the table holds already wins, as in
    `append`. If this raises, nothing of `tail` is stored: the caller appends it instead."""
    if job.log_key:
        return
    from opencodehub.storage.factory import build_storage

    pending = [
        (idx, line.step, line.text.replace("\x00", "")) for idx, line in enumerate(tail, tail_start)
    ]
    contiguous = 0

    def merged() -> Iterator[tuple[int, int | None, str]]:
        position = 0
        after = -1
        while True:
            rows = session.execute(_READ_AFTER, {"job_id": job.id, "after": after}).all()
            for idx, step, text in rows:
                while position < len(pending) and pending[position][0] < idx:
                    yield pending[position]
                    position += 1
                if position < len(pending) and pending[position][0] == idx:
                    position += 1
                yield idx, step, text
            if len(rows) < READ_BATCH:
                break
            after = rows[-1][0]
        yield from pending[position:]

    def chunks() -> Iterator[bytes]:
        nonlocal contiguous
        batch: list[str] = []
        for idx, step, text in merged():
            if idx == contiguous:
                contiguous += 1
            batch.append(json.dumps([step, text], ensure_ascii=False) + "\n")
            if len(batch) >= READ_BATCH:
                yield "".join(batch).encode()
                batch = []
        if batch:
            yield "".join(batch).encode()

    key = storage_key(job.id)
    storage = build_storage(settings)
    try:
        storage.put(key, chunks(), content_type="application/x-ndjson")
    finally:
        storage.close()
    session.execute(_DELETE, {"job_id": job.id})
    job.log_key = key
    job.log_lines = contiguous


def plain_text(lines: Sequence[Line]) -> str:
    return "".join(line.text + "\n" for line in lines)


# Live notifications ----------------------------------------------------------------------------


class _LocalHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def notify(self, job_id: int) -> None:
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                continue

    @asynccontextmanager
    async def listen(self, job_id: int) -> AsyncIterator[Listener]:
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield Listener(event)
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[job_id]


class Listener:
    """`await listener.wait(timeout)`: True when new lines were announced since the last wait."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class _RedisHub:
    def __init__(self, url: str) -> None:
        import redis

        self._url = url
        self._redis = redis.Redis.from_url(url)

    def notify(self, job_id: int) -> None:
        try:
            self._redis.publish(f"{CHANNEL_PREFIX}{job_id}", "1")
        except Exception:
            log.warning("live log notification lost; viewers catch up on their next poll")

    @asynccontextmanager
    async def listen(self, job_id: int) -> AsyncIterator[Listener]:
        import redis.asyncio

        client: Any = redis.asyncio.Redis.from_url(self._url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        event = asyncio.Event()

        async def pump() -> None:
            async for _message in pubsub.listen():
                event.set()

        try:
            await pubsub.subscribe(f"{CHANNEL_PREFIX}{job_id}")
            task = asyncio.create_task(pump())
        except Exception:
            log.warning("redis unavailable for live logs; viewers poll the database")
            task = None
        try:
            yield Listener(event)
        finally:
            if task is not None:
                task.cancel()
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:
                log.debug("closing a live-log subscription failed")


_hubs: dict[str, _LocalHub | _RedisHub] = {}
_hubs_lock = threading.Lock()


def hub(redis_url: str) -> _LocalHub | _RedisHub:
    with _hubs_lock:
        found = _hubs.get(redis_url)
        if found is None:
            found = _RedisHub(redis_url) if redis_url else _LocalHub()
            _hubs[redis_url] = found
        return found
