"""Dispatch queues: the in-process one and Redis (a real redis-server, restarted mid-run), and
the live-log notification hubs."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from opencodehub.actions import logs, service
from opencodehub.actions.queue import EmbeddedQueue, RedisQueue, label_key, runner_accepts
from tests.actions.conftest import SIMPLE, Project


def test_labels_match_case_insensitively_and_as_subsets() -> None:
    assert label_key([" Ubuntu-Latest", "gpu", "gpu"]) == "gpu,ubuntu-latest"
    assert runner_accepts(["ubuntu-latest", "gpu", "self-hosted"], ["UBUNTU-LATEST"])
    assert runner_accepts(["x"], [])
    assert not runner_accepts(["ubuntu-latest"], ["ubuntu-latest", "gpu"])


def test_embedded_queue_is_fifo_across_label_sets_and_wakes_waiters() -> None:
    queue = EmbeddedQueue()

    async def scenario() -> list[int | None]:
        queue.push(1, ["gpu"])
        queue.push(2, ["ubuntu-latest"])
        queue.push(3, ["gpu", "ubuntu-latest"])
        taken = [
            await queue.pop(["ubuntu-latest"], 0),
            await queue.pop(["ubuntu-latest"], 0),
            await queue.pop(["gpu", "ubuntu-latest"], 0),
            await queue.pop(["gpu", "ubuntu-latest"], 0),
            await queue.pop(["gpu"], 0),
        ]
        waiter = asyncio.create_task(queue.pop(["arm"], 5))
        await asyncio.sleep(0)
        await asyncio.to_thread(queue.push, 4, ["arm"])  # from another thread, as services do
        taken.append(await waiter)
        return taken

    assert asyncio.run(scenario()) == [2, None, 1, 3, None, 4]


def test_embedded_queue_skips_the_ids_of_jobs_taken_through_the_database() -> None:
    queue = EmbeddedQueue()

    async def scenario() -> list[int | None]:
        for job_id in (1, 2, 3):
            queue.push(job_id, ["ubuntu-latest"])
        queue.discard(1)
        queue.discard(3)
        queue.push(3, ["ubuntu-latest"])  # queued again (released): a hint again
        return [await queue.pop(["ubuntu-latest"], 0) for _ in range(4)]

    assert asyncio.run(scenario()) == [2, 3, 3, None]
    assert queue.pending() == 0


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required: apt-get install redis-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = RedisServer(port, tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


@pytest.mark.slow
def test_redis_queue_and_live_log_hub(redis_server: RedisServer) -> None:
    queue = RedisQueue(redis_server.url)
    hub = logs.hub(redis_server.url)

    async def scenario() -> tuple[list[int | None], bool, bool]:
        queue.push(7, ["ubuntu-latest"])
        queue.push(8, ["gpu"])
        queue.push(7, ["ubuntu-latest"])  # a duplicate: harmless, the claim decides
        popped = [
            await queue.pop(["ubuntu-latest", "self-hosted"], 1),
            await queue.pop(["gpu"], 1),
            await queue.pop(["ubuntu-latest"], 1),
            await queue.pop(["ubuntu-latest"], 0.2),
        ]
        async with hub.listen(42) as listener:
            client = redis.Redis.from_url(redis_server.url)
            deadline = time.monotonic() + 10
            while client.pubsub_numsub("och:actions:log:42")[0][1] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await asyncio.to_thread(hub.notify, 42)
            woke = await listener.wait(10)
            quiet = await listener.wait(0.2)
        return popped, woke, quiet

    assert asyncio.run(scenario()) == ([7, 8, 7, None], True, False)
    queue.close()


@pytest.mark.slow
def test_redis_restarted_mid_run_only_delays_dispatch(
    project: Project, redis_server: RedisServer
) -> None:
    project.settings = project.settings.model_copy(update={"redis_url": redis_server.url})
    run_id = project.push({".github/workflows/ci.yml": SIMPLE})[0]
    queue = RedisQueue(redis_server.url)
    assert redis.Redis.from_url(redis_server.url).llen("och:actions:queue:ubuntu-latest") == 1

    redis_server.kill()
    # With Redis down a runner's poll finds nothing in the queue (and no error escapes).
    assert asyncio.run(queue.pop(["ubuntu-latest"], 0.3)) is None
    redis_server.start()  # back, empty: the queued job's id is gone
    assert asyncio.run(queue.pop(["ubuntu-latest"], 0.3)) is None

    with project.db.session() as session:
        assert service.reenqueue(session, project.settings, older_than=timedelta(0)) == 1
    job_id = asyncio.run(queue.pop(["ubuntu-latest"], 5))
    with project.db.session() as session:
        job = service.get_job(session, project.repo, job_id or 0)
        assert (job.run_id, job.job_key) == (run_id, "build")
    queue.close()
