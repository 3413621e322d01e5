"""The event bus, in one process and across processes through the real Redis server."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid

import pytest
import redis

from opencodehub.core.events import EventBus, RedisEventBus, build_event_bus

REDIS_URL = os.environ.get("OCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Collector:
    def __init__(self, expected: int) -> None:
        self.items: list[dict] = []
        self.lock = threading.Lock()
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, payload: dict) -> None:
        with self.lock:
            self.items.append(payload)
            if len(self.items) >= self.expected:
                self.done.set()


def test_publish_reaches_subscribers_of_that_event_only() -> None:
    bus = EventBus()
    pushes, others = Collector(2), Collector(1)
    bus.subscribe("push", pushes)
    bus.subscribe("issue", others)
    bus.publish("push", {"n": 1})
    bus.publish("push", {"n": 2, "when": object.__new__(type("T", (), {"__str__": lambda s: "x"}))})
    bus.publish("nobody-listens", {"n": 3})
    assert pushes.done.wait(5)
    assert bus.flush()
    assert [item["n"] for item in pushes.items] == [1, 2]
    assert pushes.items[1]["when"] == "x"  # payloads are JSON round-tripped
    assert others.items == []
    bus.close()


def test_handlers_get_their_own_copy_and_failures_are_contained() -> None:
    bus = EventBus()
    seen = Collector(1)

    def mutating(payload: dict) -> None:
        payload["list"].append("mutated")

    def failing(payload: dict) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("push", mutating)
    bus.subscribe("push", failing)
    bus.subscribe("push", seen)
    bus.publish("push", {"list": []})
    assert seen.done.wait(5)
    assert seen.items == [{"list": []}]
    bus.close()


def test_unsubscribe_and_bad_arguments() -> None:
    bus = EventBus()
    seen = Collector(1)
    unsubscribe = bus.subscribe("push", seen)
    unsubscribe()
    unsubscribe()  # twice is harmless
    bus.publish("push", {})
    assert bus.flush()
    assert seen.items == []
    with pytest.raises(TypeError):
        bus.publish("push", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bus.publish("", {})
    with pytest.raises(ValueError):
        bus.subscribe("", seen)
    with pytest.raises(TypeError):
        bus.publish("push", None)  # type: ignore[arg-type]
    bus.close()


def test_publish_from_many_threads() -> None:
    bus = EventBus()
    seen = Collector(400)
    bus.subscribe("push", seen)

    def publisher(offset: int) -> None:
        for index in range(100):
            bus.publish("push", {"n": offset + index})

    threads = [threading.Thread(target=publisher, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen.done.wait(10)
    assert sorted(item["n"] for item in seen.items) == list(range(400))
    bus.close()


def test_coroutine_handlers_run_on_their_loop() -> None:
    async def scenario() -> list[tuple[dict, bool]]:
        bus = EventBus()
        loop = asyncio.get_running_loop()
        got: asyncio.Queue[tuple[dict, bool]] = asyncio.Queue()

        async def handler(payload: dict) -> None:
            await got.put((payload, asyncio.get_running_loop() is loop))

        bus.subscribe("push", handler)
        await asyncio.to_thread(bus.publish, "push", {"from": "thread"})
        result = [await asyncio.wait_for(got.get(), 5)]
        bus.close()
        return result

    assert asyncio.run(scenario()) == [({"from": "thread"}, True)]
    with pytest.raises(RuntimeError):

        async def handler(payload: dict) -> None:
            return None

        EventBus().subscribe("push", handler)


def test_build_event_bus_picks_the_transport() -> None:
    assert type(build_event_bus("")) is EventBus
    bus = build_event_bus(REDIS_URL)
    assert isinstance(bus, RedisEventBus)
    bus.close()


def test_redis_bus_crosses_processes() -> None:
    """Two buses stand for two processes: what one publishes, the other's handlers receive."""
    redis.Redis.from_url(REDIS_URL).ping()
    event = f"push-{uuid.uuid4().hex}"
    publisher, subscriber = RedisEventBus(REDIS_URL), RedisEventBus(REDIS_URL)
    seen, own = Collector(2), Collector(2)
    subscriber.subscribe(event, seen)
    publisher.subscribe(event, own)
    # Redis delivers only to subscriptions already registered: wait until both are.
    client = redis.Redis.from_url(REDIS_URL)
    for _ in range(100):
        if client.pubsub_numsub(f"och:events:{event}")[0][1] >= 2:
            break
        threading.Event().wait(0.05)
    publisher.publish(event, {"n": 1})
    threading.Thread(target=publisher.publish, args=(event, {"n": 2})).start()
    assert seen.done.wait(10)
    assert own.done.wait(10)
    assert sorted(item["n"] for item in seen.items) == [1, 2]
    assert sorted(item["n"] for item in own.items) == [1, 2]
    publisher.close()
    subscriber.close()
    client.close()


def test_redis_outage_does_not_fail_the_publisher() -> None:
    bus = RedisEventBus("redis://127.0.0.1:9/0")
    bus.publish("push", {"n": 1})  # logged, not raised
    bus.close()
