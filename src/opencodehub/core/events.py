"""A small event bus: `subscribe(name, handler)` and `publish(name, payload)`.

In one process by default; across processes through Redis pub/sub when a Redis URL is given. In
both modes handlers run on the bus's own dispatcher thread (never the publisher's), so a slow or
failing subscriber never slows or fails a push; a coroutine handler runs on the event loop it was
subscribed from. `publish` is safe to call from any thread. Payloads are JSON objects and are
round-tripped through JSON in both modes, so a handler sees the same shape either way.

Events are notifications, not state: the database stays the source of truth, and an event lost
with a Redis outage loses no data (consumers re-read what they need).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opencodehub.core.logging import get_logger

log = get_logger("opencodehub.events")

Payload = dict[str, Any]
Handler = Callable[[Payload], None] | Callable[[Payload], Awaitable[None]]
CHANNEL_PREFIX = "och:events:"
_STOP = object()


@dataclass(frozen=True)
class _Subscription:
    handler: Handler
    loop: asyncio.AbstractEventLoop | None


class EventBus:
    """In-process bus; `RedisEventBus` carries the same interface across processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, list[_Subscription]] = {}
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False

    # Subscribing ---------------------------------------------------------------------------

    def subscribe(self, event_name: str, handler: Handler) -> Callable[[], None]:
        """Call `handler(payload)` for every `event_name` published; returns an unsubscribe."""
        if not event_name:
            raise ValueError("event names are non-empty")
        loop: asyncio.AbstractEventLoop | None = None
        if inspect.iscoroutinefunction(handler):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError as exc:
                message = "subscribe coroutine handlers from inside an event loop"
                raise RuntimeError(message) from exc
        subscription = _Subscription(handler, loop)
        with self._lock:
            first = event_name not in self._handlers
            self._handlers.setdefault(event_name, []).append(subscription)
        if first:
            self._on_first_subscriber(event_name)

        def unsubscribe() -> None:
            with self._lock:
                handlers = self._handlers.get(event_name, [])
                if subscription in handlers:
                    handlers.remove(subscription)

        return unsubscribe

    def _on_first_subscriber(self, event_name: str) -> None:
        """Hook for transports that must listen per event name."""

    # Publishing ----------------------------------------------------------------------------

    def publish(self, event_name: str, payload: Payload) -> None:
        encoded = _encode(event_name, payload)
        self._deliver_later(event_name, encoded)

    def _deliver_later(self, event_name: str, encoded: str) -> None:
        if self._closed:
            log.warning("event published after the bus closed", event_name=event_name)
            return
        self._ensure_dispatcher()
        self._queue.put((event_name, encoded))

    # Dispatching ---------------------------------------------------------------------------

    def _ensure_dispatcher(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._dispatch_loop, name="och-event-bus", daemon=True
                )
                self._thread.start()

    def _dispatch_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                event_name, encoded = item
                self._dispatch(event_name, encoded)
            finally:
                self._queue.task_done()

    def _dispatch(self, event_name: str, encoded: str) -> None:
        with self._lock:
            subscriptions = list(self._handlers.get(event_name, ()))
        for subscription in subscriptions:
            payload = json.loads(encoded)  # each handler gets its own copy
            try:
                if subscription.loop is not None:
                    coroutine = subscription.handler(payload)
                    assert inspect.isawaitable(coroutine)
                    asyncio.run_coroutine_threadsafe(_awaited(coroutine), subscription.loop)
                else:
                    subscription.handler(payload)
            except Exception:
                log.exception("event handler failed", event_name=event_name)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far has been handed to its handlers (tests,
        orderly shutdown). True when the queue drained in time."""
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=5)
            self._thread = None


class RedisEventBus(EventBus):
    """Publishes to Redis channels `och:events:{name}`; a listener thread in each subscribing
    process receives them and hands them to the dispatcher."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        import redis

        self._redis = redis.Redis.from_url(redis_url)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._listener: Any = None

    def publish(self, event_name: str, payload: Payload) -> None:
        encoded = _encode(event_name, payload)
        try:
            self._redis.publish(CHANNEL_PREFIX + event_name, encoded)
        except Exception:
            # Notifications only: a Redis outage must not fail the push that published.
            log.exception("event could not be published to redis", event_name=event_name)

    def _on_first_subscriber(self, event_name: str) -> None:
        self._pubsub.subscribe(**{CHANNEL_PREFIX + event_name: self._on_message})
        if self._listener is None:
            self._listener = self._pubsub.run_in_thread(
                sleep_time=1.0, daemon=True, exception_handler=_log_listener_error
            )

    def _on_message(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        data = message["data"]
        if isinstance(data, bytes):
            data = data.decode()
        self._deliver_later(channel.removeprefix(CHANNEL_PREFIX), data)

    def close(self) -> None:
        if self._listener is not None:
            # The worker thread closes the pub/sub connection itself as it stops.
            self._listener.stop()
            self._listener.join(timeout=5)
            self._listener = None
        else:
            self._pubsub.close()
        self._redis.close()
        super().close()


def _log_listener_error(error: BaseException, pubsub: Any, thread: Any) -> None:
    log.error("redis event listener failed", error=str(error))


async def _awaited(awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("async event handler failed")


def _encode(event_name: str, payload: Payload) -> str:
    if not event_name:
        raise ValueError("event names are non-empty")
    if not isinstance(payload, dict):
        raise TypeError("event payloads are JSON objects")
    # default=str: datetimes and the like travel as their text, as they would in any JSON API.
    return json.dumps(payload, separators=(",", ":"), default=str)


def build_event_bus(redis_url: str = "") -> EventBus:
    """Redis-backed when a URL is configured, in-process otherwise."""
    return RedisEventBus(redis_url) if redis_url else EventBus()
